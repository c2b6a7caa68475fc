-- core.xml_parse: AWS response bodies as Lua element tables.
local core = require "luabatch.core"


-- First child element named `name`.
local function child(e, name)
  for i = 1, #e do
    if e[i].name == name then return e[i] end
  end
end


describe("luabatch.core xml #unit", function()
  it("reads an S3 error body", function()
    local e = assert(core.xml_parse([[
<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The specified key does not exist.</Message>
  <Key>data/missing &amp; gone.csv</Key>
  <RequestId>4442587FB7D0A2F9</RequestId>
  <HostId>piYUBo+9kSA/AVgGyGz4q2TFgz3BYaMB7bqpD2v0s2Q=</HostId>
</Error>
]]))
    assert.are.equal("Error", e.name)
    assert.is_nil(e.ns)
    assert.are.same({}, e.attrs)
    assert.are.equal(5, #e)
    assert.are.equal("NoSuchKey", child(e, "Code").text)
    assert.are.equal("The specified key does not exist.", child(e, "Message").text)
    assert.are.equal("data/missing & gone.csv", child(e, "Key").text)
    assert.are.equal("RequestId", e[4].name)
    -- the element's own text is kept raw: here, the indentation between children
    assert.are.equal("\n  \n  \n  \n  \n  \n", e.text)
  end)

  it("reads an S3 ListBucketResult with its namespace stripped from names", function()
    local e = assert(core.xml_parse(
      '<?xml version="1.0" encoding="UTF-8"?>\n'
      .. '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
      .. "<Name>my-bucket</Name><Prefix>logs/</Prefix><KeyCount>2</KeyCount>"
      .. "<IsTruncated>false</IsTruncated>"
      .. "<Contents><Key>logs/1.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
      .. "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size>"
      .. "<StorageClass>STANDARD</StorageClass></Contents>"
      .. "<Contents><Key>logs/2.txt</Key><Size>1048576</Size></Contents>"
      .. "<CommonPrefixes><Prefix>logs/sub/</Prefix></CommonPrefixes>"
      .. "</ListBucketResult>"))
    assert.are.equal("ListBucketResult", e.name)
    assert.are.equal("http://s3.amazonaws.com/doc/2006-03-01/", e.ns)
    assert.are.equal("my-bucket", child(e, "Name").text)
    local keys = {}
    for i = 1, #e do
      if e[i].name == "Contents" then keys[#keys + 1] = child(e[i], "Key").text end
    end
    assert.are.same({ "logs/1.txt", "logs/2.txt" }, keys)
    assert.are.equal('"d41d8cd98f00b204e9800998ecf8427e"', child(child(e, "Contents"), "ETag").text)
    assert.are.equal("logs/sub/", child(child(e, "CommonPrefixes"), "Prefix").text)
  end)

  it("reads an STS AssumeRoleWithWebIdentityResponse", function()
    local e = assert(core.xml_parse([[
<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:batch:runner</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/runner/session</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2024-01-02T04:04:05Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
]]))
    assert.are.equal("AssumeRoleWithWebIdentityResponse", e.name)
    assert.are.equal("https://sts.amazonaws.com/doc/2011-06-15/", e.ns)
    local creds = child(child(e, "AssumeRoleWithWebIdentityResult"), "Credentials")
    assert.are.equal("ASgeIAIOSFODNN7EXAMPLE", child(creds, "AccessKeyId").text)
    assert.are.equal("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", child(creds, "SecretAccessKey").text)
    assert.are.equal("2024-01-02T04:04:05Z", child(creds, "Expiration").text)
    assert.are.equal("ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE", child(child(e, "ResponseMetadata"), "RequestId").text)
  end)

  it("gives attributes by local name, CDATA and character references decoded", function()
    local e = assert(core.xml_parse(
      '<x:root xmlns:x="urn:x" xmlns:y="urn:y" id="7" y:kind="k&lt;">a<![CDATA[<b>]]>&#x41;<c/>d</x:root>'))
    assert.are.equal("root", e.name)
    assert.are.equal("urn:x", e.ns)
    assert.are.same({ id = "7", kind = "k<" }, e.attrs)
    assert.are.equal("a<b>Ad", e.text)
    assert.are.equal(1, #e)
    assert.are.same({ name = "c", attrs = {}, text = "" }, e[1])
  end)

  it("returns nil, message with line and column, EPARSE for malformed XML", function()
    local e, msg, code = core.xml_parse("<Error>\n  <Code>X</Cod>\n</Error>")
    assert.is_nil(e)
    assert.are.equal("xml: line 2 col 12: mismatched tag", msg)
    assert.are.equal("EPARSE", code)
    e, msg, code = core.xml_parse("")
    assert.is_nil(e)
    assert.are.equal("xml: line 1 col 1: no element found", msg)
    assert.are.equal("EPARSE", code)
    e, msg = core.xml_parse("<html><body>502 Bad Gateway</body>")
    assert.is_nil(e)
    assert.matches("^xml: line 1 col %d+: no element found$", msg)
  end)

  it("refuses entity declarations (billion laughs)", function()
    local e, msg, code = core.xml_parse([[
<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<lolz>&lol2;</lolz>
]])
    assert.is_nil(e)
    assert.matches("entity declarations are not allowed", msg)
    assert.are.equal("EPARSE", code)
  end)

  it("caps nesting depth", function()
    local ok = string.rep("<a>", 256) .. string.rep("</a>", 256)
    assert.is_table(core.xml_parse(ok))
    local deep = string.rep("<a>", 257) .. string.rep("</a>", 257)
    local e, msg = core.xml_parse(deep)
    assert.is_nil(e)
    assert.matches("nesting deeper than 256 elements", msg)
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.xml_parse() end)
    assert.has_error(function() core.xml_parse({}) end)
  end)

  it("frees its trees when garbage is collected", function()
    for _ = 1, 200 do
      core.xml_parse("<a><b>1</b></a>")
      core.xml_parse("<a>")
    end
    collectgarbage()
    collectgarbage()
  end)
end)
