-- luabatch.runner.aws_batch.schema: the `with:` fields of runs-on
-- aws_batch (kinds: luabatch.runner.schema).  Checked at load for literal
-- values and by aws_batch/check.lua for rendered ones: one list, one rule.
-- Any other key is an error (a silent loss otherwise), but the `ignored`
-- ones, which are warned about.
return {
  fields = {
    job_queue_arn = "str", job_queue = "str", s3_bucket = "str", s3_prefix = "str", region_name = "str",
    region = "str",
    profile = "str", aws_access_key_id = "str", aws_secret_access_key = "str", aws_session_token = "str",
    endpoint_url = "str", batch_endpoint = "str", s3_endpoint = "str", logs_endpoint = "str",
    image = "str", vcpus = "posnum", memory = "posint", gpus = "nonnegint", job_role_arn = "str",
    execution_role_arn = "str", platform = "platform", platform_version = "str", assign_public_ip = "bool",
    timeout = "timeout", retry_attempts = "attempts", environment = "strmap", tags = "strmap",
    array = "bool", keep_on_failure = "bool", log_group = "str",
    -- secrets, fair share, storage, multi-node (aws_batch/kinds.lua)
    secrets = "secrets", share_identifier = "str", scheduling_priority = "priority",
    volumes = "volumes", mount_points = "mount_points", shared_memory = "posint", tmpfs = "tmpfs",
    ephemeral_storage = "ephemeral_storage", nodes = "nodes",
  },
  kinds = require("luabatch.runner.aws_batch.kinds"),
  required = { { "job_queue_arn", "job_queue" }, "s3_bucket" },
  secrets = { "aws_secret_access_key", "aws_session_token" },
  -- keys ddeutil-workflow's AWS Batch docstring shows that mean nothing for
  -- a job (its queue's compute environments decide): a warning, not an error
  ignored = {
    compute_environment_type = "the job queue's compute environments decide the platform's capacity",
    instance_types = "the job queue's compute environments decide the instance types",
  },
  -- the rules across fields (Fargate task sizes, what needs the execution
  -- role, mounts naming volumes, ...): the job definition built, nothing
  -- sent -> true | nil, "with.<field> ..." (checked before a run starts)
  validate = function(with, policy)
    local p = require("luabatch.runner.aws_batch.policy").merge(policy)
    local spec, err = require("luabatch.runner.aws_batch.jobdef").spec(with, p)
    if not spec then return nil, err end
    return true
  end,
}
