-- sigv4_diff.lua -- differential test of core.sigv4_sign against botocore.
--
--   LUA_PATH='lua/?.lua;;' LUA_CPATH='build/lua5.4/?.so;;' lua5.4 tests/integration/sigv4_diff.lua [N] [seed]
--   (same with luajit and build/luajit)
--
-- Generates N (default 3000) random requests from a seeded PRNG, signs the
-- whole batch once with the reference signer (tests/tools/sigv4_ref.py,
-- or $SIGV4_REF, run by /usr/bin/python3) and each request with
-- core.sigv4_sign, and compares canonical request, string to sign,
-- signature (and the Authorization value / final URL) exactly.
--
-- The generator stays inside what botocore treats like the SigV4 spec:
-- no Host/Date/X-Amz-* headers (botocore derives Host from the URL and
-- rewrites Date), canonically encoded query strings (botocore signs the
-- query verbatim), and in query mode no body, no Content-Type and unique
-- query keys (its presigner moves the body into the query, drops
-- Content-Type and keeps only the first value of a repeated key).

local core = require "luabatch.core"
local cjson = require "cjson"

local N = tonumber(arg and arg[1]) or 3000
local SEED = tonumber(arg and arg[2]) or 20150830
local REF = os.getenv("SIGV4_REF") or "tests/tools/sigv4_ref.py"

local byte, char, concat, format = string.byte, string.char, table.concat, string.format


-- Park-Miller minimal standard generator: exact in doubles on Lua 5.4 and LuaJIT.
local state = SEED % 2147483646 + 1

local function rnd(n)  -- integer in 1..n
    state = (state * 16807) % 2147483647
    return state % n + 1
end

local function chance(p) return rnd(1000) <= p * 1000 end

local function pick(t) return t[rnd(#t)] end


local UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"

local function encode(s)  -- SigV4 canonical percent-encoding
    return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end

local UTF8 = { "\u{e9}", "\u{1234}", "\u{4e2d}\u{6587}", "\u{1f600}", "\u{fc}ber", "\u{3c0}" }
local RESERVED = { " ", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "/", ":",
                   ";", "<", "=", ">", "?", "@", "[", "\\", "]", "^", "`", "{", "|", "}" }

local function text(maxlen)  -- a valid UTF-8 string with reserved and unreserved chars
    local out = {}
    for i = 1, rnd(maxlen + 1) - 1 do
        local r = rnd(10)
        if r <= 5 then
            local k = rnd(#UNRESERVED)
            out[i] = UNRESERVED:sub(k, k)
        elseif r <= 8 then
            out[i] = pick(RESERVED)
        else
            out[i] = pick(UTF8)
        end
    end
    return concat(out)
end

local function bytes(n)
    local out = {}
    for i = 1, n do out[i] = char(rnd(256) - 1) end
    return concat(out)
end

local function mixcase(s)
    return (s:gsub("%a", function(c)
        if chance(0.5) then return c:upper() end
        return c:lower()
    end))
end

local function hex(s)
    return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end


-- A path segment as it would appear on the wire.
local SUB_DELIMS = { "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", ":", "@" }

local function segment()
    local r = rnd(12)
    if r == 1 then return "" end
    if r == 2 then return "." end
    if r == 3 then return ".." end
    local parts = {}
    for i = 1, rnd(4) do
        local k = rnd(6)
        if k <= 2 then parts[i] = text(6):gsub(".", function(c)
            if c:find("[%w%-%._~]") then return c end
            return format("%%%02X", byte(c))
        end)
        elseif k == 3 then parts[i] = pick(SUB_DELIMS)
        elseif k == 4 then parts[i] = encode(pick(UTF8))
        elseif k == 5 then parts[i] = format("%%%02x", rnd(256) - 1)  -- lowercase hex
        else parts[i] = pick({ "photos", "2024", "a-b_c.d~e", "key", "x" }) end
    end
    return concat(parts)
end

local function path()
    local segs = { "" }
    for i = 1, rnd(6) - 1 do segs[#segs + 1] = segment() end
    local p = concat(segs, "/")
    if p == "" or chance(0.3) then p = p .. "/" end
    return p
end


-- Query string: canonically encoded pairs; repeated keys and empty values
-- (header mode only), keys without '='.
local QKEYS = { "prefix", "list-type", "uploadId", "partNumber", "Action", "Version", "max-keys",
                "delimiter", "a", "A", "b", "Z" }

local function query(query_mode)
    local n = rnd(6) - 1
    if n == 0 then return "" end
    local out, seen = {}, {}
    for _ = 1, n do
        local k = chance(0.6) and pick(QKEYS) or text(5)
        if k == "" then k = "k" end
        if not (query_mode and seen[k]) then
            seen[k] = true
            local v = chance(0.2) and "" or text(8)
            if not query_mode and v == "" and chance(0.4) then
                out[#out + 1] = encode(k)                 -- "key" without '='
            else
                out[#out + 1] = encode(k) .. "=" .. encode(v)
            end
            if not query_mode and chance(0.15) then     -- repeated key
                out[#out + 1] = encode(k) .. "=" .. encode(text(4))
            end
        end
    end
    return concat(out, "&")
end


local HNAMES = { "X-Custom", "x-amz-meta-color", "X-Amz-Meta-Long-Name", "Content-Type", "Range",
                 "If-None-Match", "Cache-Control", "X-Odd_Name", "x-abc", "Content-Encoding",
                 "x-amz-acl", "User-Agent", "X-Amzn-Trace-Id", "x-amz-storage-class" }
local VCHARS = "abcXYZ019 \t\"'-_.,;:=/()[]{}<>?@!#$%&*+~^`|\\"

local function hvalue()
    local out = {}
    for i = 1, rnd(20) - 1 do
        local k = rnd(#VCHARS)
        out[i] = VCHARS:sub(k, k)
    end
    local v = concat(out)
    if chance(0.3) then v = "  " .. v end
    if chance(0.3) then v = v .. " \t" end
    if chance(0.2) then v = "a   b\t\tc" .. v end
    return v
end

local function headers(query_mode)
    local hs = {}
    for _ = 1, rnd(7) - 1 do
        local name = pick(HNAMES)
        if not (query_mode and name == "Content-Type") then
            hs[#hs + 1] = { mixcase(name), hvalue() }
            if chance(0.2) then hs[#hs + 1] = { mixcase(name), hvalue() } end  -- duplicate
        end
    end
    return hs
end


local SERVICES = { "s3", "s3", "s3", "service", "batch", "sts", "execute-api", "iam", "logs" }
local REGIONS = { "us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1" }
local METHODS = { "GET", "GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS" }
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64ish(n)
    local out = {}
    for i = 1, n do
        local k = rnd(#B64)
        out[i] = B64:sub(k, k)
    end
    return concat(out)
end

local function gen_one()
    local service, region = pick(SERVICES), pick(REGIONS)
    local mode = chance(0.3) and "query" or "header"
    local unsigned = mode == "header" and chance(0.2)
    local scheme = (unsigned or chance(0.8)) and "https" or "http"
    local host
    if service == "s3" then
        host = pick({ "bucket-" .. rnd(99) .. ".s3." .. region .. ".amazonaws.com", "s3.amazonaws.com",
                      "s3." .. region .. ".amazonaws.com", "my.bucket.s3.amazonaws.com" })
    else
        host = service .. "." .. region .. ".amazonaws.com"
    end
    if chance(0.2) then host = mixcase(host) end
    local r = rnd(10)
    if r == 1 then host = host .. (scheme == "https" and ":443" or ":80")
    elseif r == 2 then host = host .. ":8443" end
    local q = query(mode == "query")
    local url = scheme .. "://" .. host .. path() .. (q ~= "" and ("?" .. q) or (chance(0.05) and mode == "header" and "?" or ""))
    local t = rnd(631152000) + 1262304000  -- 2010 .. 2030
    local req = {
        method = pick(METHODS), url = url, headers = headers(mode == "query"),
        region = region, service = service, mode = mode,
        access_key = "AKIA" .. b64ish(16):upper():gsub("[^%w]", "Q"),
        secret_key = b64ish(40),
        date = os.date("!%Y%m%dT%H%M%SZ", t), epoch = t,
    }
    if chance(0.4) then req.session_token = b64ish(rnd(300)) .. "==" end
    if mode == "query" then
        req.expires = rnd(604800)
    else
        local b = rnd(4)
        if b == 2 then req.body = text(40)
        elseif b == 3 then req.body_bin = bytes(rnd(300) - 1) end
        if unsigned then req.unsigned = true end
    end
    return req
end


local function to_ref(req)
    local r = {
        method = req.method, url = req.url, headers = req.headers, region = req.region,
        service = req.service, date = req.date, access_key = req.access_key,
        secret_key = req.secret_key, session_token = req.session_token, mode = req.mode,
        expires = req.expires, signer = "auto",
    }
    if #req.headers == 0 then r.headers = nil end
    if req.body then r.body = req.body end
    if req.body_bin then r.body_hex = hex(req.body_bin) end
    if req.unsigned then r.unsigned_payload = true end
    return r
end

local function sign_ours(req, i)
    local r = {
        method = req.method, url = req.url, headers = req.headers, region = req.region,
        service = req.service, access_key = req.access_key, secret_key = req.secret_key,
        session_token = req.session_token, mode = req.mode, expires = req.expires,
        body = req.body or req.body_bin, debug = true,
    }
    if i % 2 == 0 then r.date = req.date else r.time = req.epoch end
    if req.unsigned then
        r.payload_hash = "UNSIGNED-PAYLOAD"
        r.content_sha256_header = true   -- botocore adds and signs X-Amz-Content-SHA256 then
    end
    return core.sigv4_sign(r)
end


local function main()
    local reqs = {}
    for i = 1, N do reqs[i] = gen_one() end
    local refin = {}
    for i = 1, N do refin[i] = to_ref(reqs[i]) end
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write(cjson.encode(refin))
    f:close()
    local p = assert(io.popen("/usr/bin/python3 '" .. REF .. "' '" .. tmp .. "'", "r"))
    local out = p:read("*a")
    p:close()
    os.remove(tmp)
    local ok, refs = pcall(cjson.decode, out)
    if not ok or type(refs) ~= "table" or #refs ~= N then
        io.stderr:write("sigv4_diff: reference signer failed (", REF, ")\n", out:sub(1, 2000), "\n")
        print(format("TEST sigv4_diff: 0 passed, %d failed", N))
        os.exit(1)
    end

    local passed, failed, shown = 0, 0, 0
    local counts = { s3 = 0, other = 0, query = 0, header = 0, token = 0, unsigned = 0, binary = 0 }
    for i = 1, N do
        local req, ref = reqs[i], refs[i]
        local res, err = sign_ours(req, i)
        local diffs = {}
        if not res then
            diffs[1] = "sigv4_sign failed: " .. tostring(err)
        else
            for _, k in ipairs({ "canonical_request", "string_to_sign", "signature" }) do
                if res[k] ~= ref[k] then diffs[#diffs + 1] = k end
            end
            if req.mode == "query" and res.url ~= ref.url then diffs[#diffs + 1] = "url" end
            if req.mode == "header" and res.authorization ~= ref.authorization then
                diffs[#diffs + 1] = "authorization"
            end
        end
        if #diffs == 0 then
            passed = passed + 1
            counts[req.service == "s3" and "s3" or "other"] = counts[req.service == "s3" and "s3" or "other"] + 1
            counts[req.mode] = counts[req.mode] + 1
            if req.session_token then counts.token = counts.token + 1 end
            if req.unsigned then counts.unsigned = counts.unsigned + 1 end
            if req.body_bin then counts.binary = counts.binary + 1 end
        else
            failed = failed + 1
            print(format("MISMATCH #%d (%s %s %s, service %s): %s", i, req.mode, req.method, req.url,
                         req.service, concat(diffs, ", ")))
            if shown < 5 and res then
                shown = shown + 1
                for _, k in ipairs(diffs) do
                    print("--- ours " .. k .. "\n" .. tostring(res[k]))
                    print("--- botocore " .. k .. "\n" .. tostring(ref[k]))
                end
            end
        end
    end
    print(format("agreeing: %d s3, %d other; %d header, %d query; %d with token, %d unsigned, %d binary body",
                 counts.s3, counts.other, counts.header, counts.query, counts.token, counts.unsigned,
                 counts.binary))
    print(format("TEST sigv4_diff: %d passed, %d failed", passed, failed))
    if failed > 0 then os.exit(1) end
end

main()
