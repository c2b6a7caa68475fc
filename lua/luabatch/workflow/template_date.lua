-- luabatch.workflow.template_date: ISO dates and datetimes of template values
-- (params of type date/datetime, the `fmt` filter), proleptic Gregorian.
--
-- date.parse_iso(s) -> t | nil, why
--   "2024-03-01", "20240301", "2024-03-01T04:05:06.5+02:00", "... 04:05Z";
--   t = { y, m, d, H, M, S, us, offset = minutes east | nil (naive),
--   date_only = true for a bare date }.
-- date.to_utc(t) -> t at offset 0 (a naive t is taken as UTC)
-- date.iso_date(t) -> "2024-03-01";  date.iso_datetime(t) -> "2024-03-01T04:05:06Z"
--   (".000500" microseconds when not 0; t is taken as UTC)
-- date.strftime(t, fmt) -> string   (Python's %Y %y %m %d %H %M %S %f %I %p %j
--   %a %A %b %B %w %z %Z %F %T %%; any other %c stays as it is)
-- date.days_from_civil(y, m, d) -> days since 1970-01-01;
-- date.civil_from_days(n) -> y, m, d
-- Nothing raises; nothing keeps state.

local _M = { _VERSION = "0.1.0" }

local str_format = string.format
local str_sub = string.sub
local math_floor = math.floor

local MONTHS = { "January", "February", "March", "April", "May", "June", "July", "August", "September",
  "October", "November", "December" }
local DAYS = { "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday" }


-- days since 1970-01-01 (proleptic Gregorian)
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math_floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math_floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math_floor(yoe / 4) - math_floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
_M.days_from_civil = days_from_civil

local function civil_from_days(z)
  z = z + 719468
  local era = math_floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math_floor((doe - math_floor(doe / 1460) + math_floor(doe / 36524) - math_floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math_floor(yoe / 4) - math_floor(yoe / 100))
  local mp = math_floor((5 * doy + 2) / 153)
  local d = doy - math_floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
_M.civil_from_days = civil_from_days

local function month_len(y, m)
  if m == 2 then return ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) and 29 or 28 end
  return ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[m]
end

-- Parse an ISO date or datetime string.  Returns a table
-- { y, m, d, H, M, S, us, offset = minutes | nil, date_only = bool } or nil, why.
function _M.parse_iso(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local y, m, d, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  if not y then y, m, d, rest = s:match("^(%d%d%d%d)(%d%d)(%d%d)(.*)$") end
  if not y then return nil, "not an ISO date" end
  local t = { y = tonumber(y), m = tonumber(m), d = tonumber(d), H = 0, M = 0, S = 0, us = 0 }
  if t.m < 1 or t.m > 12 or t.d < 1 or t.d > month_len(t.y, t.m) then return nil, "day is out of range" end
  if rest == "" then t.date_only = true; return t end
  local sep, hh, mi, tail = rest:match("^([Tt ])(%d%d):?(%d%d)(.*)$")
  if not sep then
    sep, hh, tail = rest:match("^([Tt ])(%d%d)(.*)$")
    mi = "00"
    if not sep then return nil, "bad time" end
  end
  t.H, t.M = tonumber(hh), tonumber(mi)
  local ss, tail2 = tail:match("^:?(%d%d)(.*)$")
  if ss then
    t.S = tonumber(ss); tail = tail2
    local frac, tail3 = tail:match("^[.,](%d+)(.*)$")
    if frac then
      t.us = tonumber(str_sub(frac .. "000000", 1, 6)); tail = tail3
    end
  end
  if tail == "Z" or tail == "z" then
    t.offset = 0
  elseif tail ~= "" then
    local sg, oh, om = tail:match("^%s*([-+])(%d%d):?(%d%d)$")
    if not sg then sg, oh = tail:match("^%s*([-+])(%d%d)$"); om = "00" end
    if not sg then return nil, "bad time zone" end
    t.offset = (tonumber(oh) * 60 + tonumber(om)) * (sg == "-" and -1 or 1)
  end
  if t.H > 23 or t.M > 59 or t.S > 59 then return nil, "time is out of range" end
  return t
end

local function iso_date(t) return str_format("%04d-%02d-%02d", t.y, t.m, t.d) end
_M.iso_date = iso_date

-- Convert a parsed datetime to UTC (a naive one is taken as UTC).
function _M.to_utc(t)
  local off = t.offset or 0
  local days = days_from_civil(t.y, t.m, t.d)
  local mins = days * 1440 + t.H * 60 + t.M - off
  local nd = math_floor(mins / 1440)
  local rem = mins - nd * 1440
  local y, m, d = civil_from_days(nd)
  return { y = y, m = m, d = d, H = math_floor(rem / 60), M = rem % 60, S = t.S, us = t.us, offset = 0 }
end

function _M.iso_datetime(t)
  local s = str_format("%04d-%02d-%02dT%02d:%02d:%02d", t.y, t.m, t.d, t.H, t.M, t.S)
  if t.us ~= 0 then s = s .. str_format(".%06d", t.us) end
  return s .. "Z"
end

function _M.strftime(t, fmt)
  local wd = (days_from_civil(t.y, t.m, t.d) + 3) % 7 + 1 -- 1 = Monday
  local yday = days_from_civil(t.y, t.m, t.d) - days_from_civil(t.y, 1, 1) + 1
  local function off()
    if not t.offset then return "" end
    local o = t.offset
    return str_format("%s%02d%02d", o < 0 and "-" or "+", math_floor(math.abs(o) / 60), math.abs(o) % 60)
  end
  local map = {
    Y = function() return str_format("%04d", t.y) end, y = function() return str_format("%02d", t.y % 100) end,
    m = function() return str_format("%02d", t.m) end, d = function() return str_format("%02d", t.d) end,
    H = function() return str_format("%02d", t.H) end, M = function() return str_format("%02d", t.M) end,
    S = function() return str_format("%02d", t.S) end, f = function() return str_format("%06d", t.us) end,
    I = function() return str_format("%02d", (t.H + 11) % 12 + 1) end,
    p = function() return t.H < 12 and "AM" or "PM" end,
    j = function() return str_format("%03d", yday) end,
    a = function() return str_sub(DAYS[wd], 1, 3) end, A = function() return DAYS[wd] end,
    b = function() return str_sub(MONTHS[t.m], 1, 3) end, B = function() return MONTHS[t.m] end,
    w = function() return tostring(wd % 7) end,
    z = off, Z = function() return t.offset and (t.offset == 0 and "UTC" or off()) or "" end,
    F = function() return iso_date(t) end, T = function() return str_format("%02d:%02d:%02d", t.H, t.M, t.S) end,
    ["%"] = function() return "%" end,
  }
  return (fmt:gsub("%%(.)", function(c)
    local f = map[c]
    return f and f() or ("%" .. c)
  end))
end

return _M
