-- luabatch.aws.time: UTC date parsing for AWS wire formats, pure Lua.
--
-- os.time() interprets its table in local time, so we compute epochs from
-- civil UTC dates ourselves (days-from-civil, proleptic Gregorian).  Used for
-- credential expirations (ISO 8601) and clock-skew correction (HTTP Date).

local _M = { _VERSION = "0.1.0" }

local floor = math.floor
local tonumber = tonumber
local str_match = string.match
local str_lower = string.lower


local MONTHS = {
  jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
  jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12,
}


--- Days since 1970-01-01 of the civil date y-m-d (UTC).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end


--- Epoch seconds of a UTC civil time.
function _M.epoch(y, mo, d, h, mi, s)
  return days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end


--- Parse an ISO 8601 timestamp as AWS sends them ("2025-11-24T10:00:00Z",
-- "2025-11-24T10:00:00.123Z", "2025-11-24T10:00:00+02:00",
-- "20251124T100000Z") -> epoch seconds | nil.
function _M.parse_iso8601(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest =
    str_match(s, "^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.-)%s*$")
  if not y then
    y, mo, d, h, mi, sec, rest = str_match(s, "^%s*(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)(.-)%s*$")
  end
  if not y then return nil end
  local frac = 0
  local f, tail = str_match(rest, "^%.(%d+)(.*)$")
  if f then
    frac = tonumber("0." .. f)
    rest = tail
  end
  local offset = 0
  if rest == "Z" or rest == "z" or rest == "" then
    offset = 0
  else
    local sign, oh, om = str_match(rest, "^([%+%-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  return _M.epoch(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec))
    - offset + frac
end


--- Parse an HTTP date (RFC 7231 IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
-- also RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime
-- "Sun Nov  6 08:49:37 1994") -> epoch seconds | nil.
function _M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = str_match(s, "^%s*%a+,%s*(%d%d?)%s+(%a%a%a)%s+(%d%d%d%d)%s+(%d%d):(%d%d):(%d%d)")
  if not d then
    d, mon, y, h, mi, sec = str_match(s, "^%s*%a+,%s*(%d%d)%-(%a%a%a)%-(%d%d)%s+(%d%d):(%d%d):(%d%d)")
    if y then
      y = tonumber(y)
      y = y < 70 and 2000 + y or 1900 + y
    end
  end
  if not d then
    mon, d, h, mi, sec, y = str_match(s, "^%s*%a+%s+(%a%a%a)%s+(%d%d?)%s+(%d%d):(%d%d):(%d%d)%s+(%d%d%d%d)")
  end
  if not d then return nil end
  local m = MONTHS[str_lower(mon)]
  if not m then return nil end
  return _M.epoch(tonumber(y), m, tonumber(d), tonumber(h), tonumber(mi), tonumber(sec))
end


--- Format epoch seconds as "2025-11-24T10:00:00Z".
function _M.format_iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end


return _M
