-- luabatch.runner.docker.schema: the `with:` fields of runs-on docker
-- (kinds: luabatch.runner.schema), checked at load for literal values and
-- by runner/docker's check for rendered ones.  Any other key is an error.
return {
  fields = {
    image = "str", volumes = "strlist", environment = "strmap", cpus = "posnum", memory = "posint",
    docker_host = "str", s3_bucket = "str", s3_prefix = "str", s3_endpoint = "str", endpoint_url = "str",
    region = "str", profile = "str", aws_access_key_id = "str", aws_secret_access_key = "str",
    aws_session_token = "str",
  },
  required = { "s3_bucket" },
  secrets = { "aws_secret_access_key", "aws_session_token" },
}
