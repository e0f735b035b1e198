"""Lua scripts behind `RedisState`: each decision is one atomic round trip.

Key layout under the state's prefix `P` (a budget key names an (account, model), a member a
deployment):

    P b:{key}:meta         hash  c:{id} configured limit ("" unknown), l:{id} learned limit
    P b:{key}:w:{id}       hash  time bucket index -> amount counted in it (period/BUCKETS long)
    P b:{key}:r:{id}       hash  the provider's last reading: rem, at, until, spent (since)
    P h:{member}           hash  c cooldown_until, f failures, o opened, u open_until, p probing
    P t:{route}            int   the next round-robin turn

A hold is known to Redis only by what it added to its windows' buckets: a settlement adds the
difference between two counts to the bucket of the hold's moment.

A window `id` is `{kind}|{period}` (`tokens|60.0`). A bucket counts while its end lies within
the window, so a charge leaves at most one bucket late and never early. A reading keeps what
was charged after it (`spent`: a charge at its very moment counts as before it, as in
`limits.Window` and SQLite), until it expires however long past the window that is. Times
come from the caller's clock (ARGV), never from Redis TIME; every key gets a TTL a little past
the moment it stops mattering.
"""

from __future__ import annotations

from ..limits import BUCKETS

WINDOW_MARGIN = 60.0
"""Seconds a bucket hash or a reading outlives its last use (clock skew between machines)."""
HEALTH_MARGIN = 900.0
"""Seconds a member's health outlives its cooldown and rest (then its failures are forgotten)."""
TURN_TTL_MS = 30 * 86_400_000
"""A route's turn counter lives this long after its last use."""

_PRELUDE = (
    f"""
local DAY = 86400
local WINDOW_MARGIN, HEALTH_MARGIN = {WINDOW_MARGIN!r}, {HEALTH_MARGIN!r}
local BUCKETS = {BUCKETS}
"""
    + """
local function num(v)
  if v == false or v == nil or v == '' then return nil end
  return tonumber(v)
end
local function fmt(x) return string.format('%.17g', x) end
local function period_of(id) return tonumber(string.match(id, '|(.+)$')) end
local function index(t, period) return math.floor(t * BUCKETS / period) end
local function field(b) return string.format('%d', b) end
local function edge(b, period) return (b + 1) * period / BUCKETS end
local function extend(key, seconds)
  local ms = math.ceil(seconds * 1000)
  if ms < 1 then ms = 1 end
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < ms then redis.call('PEXPIRE', key, ms) end
end
"""
)

_BUDGET = """
-- One window now: its live buckets (stale ones deleted), use, and what is left.
local function load(base, id, limit, now, day)
  local period = period_of(id)
  local w = {id = id, kind = string.match(id, '^(%a+)|'), period = period, limit = limit,
             key = base .. ':w:' .. id, buckets = {}, used = 0, today = 0}
  local flat, stale = redis.call('HGETALL', w.key), {}
  for i = 1, #flat, 2 do
    local b, v = tonumber(flat[i]), tonumber(flat[i + 1])
    if edge(b, period) > now - period then
      w.buckets[#w.buckets + 1] = {b, v}
      w.used = w.used + v
      if b * period / BUCKETS >= day then w.today = w.today + v end
    else
      stale[#stale + 1] = flat[i]
    end
  end
  for i = 1, #stale, 500 do
    redis.call('HDEL', w.key, unpack(stale, i, math.min(i + 499, #stale)))
  end
  table.sort(w.buckets, function(x, y) return x[1] < y[1] end)
  if limit ~= nil then w.remaining = limit - w.used end
  w.rkey = base .. ':r:' .. id
  local r = redis.call('HMGET', w.rkey, 'rem', 'at', 'until', 'spent')
  w.seen = num(r[2])
  local valid = num(r[3])
  if valid ~= nil and now < valid then
    local reported = tonumber(r[1]) - (num(r[4]) or 0)
    w.observed = {reported, valid}
    if w.remaining == nil or reported < w.remaining then w.remaining = reported end
  end
  return w
end

-- The soonest moment `amount` fits in window `w` (Window.free_at, over buckets).
local function free_at(w, amount, now)
  if w.remaining == nil or w.remaining >= amount then return now end
  if w.limit ~= nil and amount > w.limit then return math.huge end  -- it never fits
  if w.observed ~= nil and w.observed[1] < amount then return w.observed[2] end
  if w.limit == nil then return now + w.period end
  local needed = amount - w.remaining
  for _, e in ipairs(w.buckets) do
    needed = needed - e[2]
    if needed <= 0 then return edge(e[1], w.period) + w.period end
  end
  return now + w.period
end

-- Every window of a budget: the configured ones (ARGV pairs id, limit from `first`) in
-- their order, then the learned ones; configured limits are stored, learned ones win.
local function budget(base, now, day, first)
  local meta = base .. ':meta'
  local flat = redis.call('HGETALL', meta)
  local cfg, learned, order, seen, rest = {}, {}, {}, {}, {}
  for i = 1, #flat, 2 do
    local id = string.sub(flat[i], 3)
    local into = string.sub(flat[i], 1, 1) == 'l' and learned or cfg
    into[id] = flat[i + 1]
  end
  for i = first, #ARGV, 2 do
    local id, limit = ARGV[i], ARGV[i + 1]
    if cfg[id] ~= limit then redis.call('HSET', meta, 'c:' .. id, limit) cfg[id] = limit end
    if not seen[id] then seen[id] = true order[#order + 1] = id end
  end
  for id in pairs(cfg) do if not seen[id] then rest[#rest + 1] = id end end
  table.sort(rest)
  for _, id in ipairs(rest) do order[#order + 1] = id end
  local windows, longest = {}, 0
  for _, id in ipairs(order) do
    local w = load(base, id, num(learned[id]) or num(cfg[id]), now, day)
    windows[#windows + 1] = w
    longest = math.max(longest, w.period)
  end
  if #order > 0 then extend(meta, longest + DAY) end
  return windows
end

-- Take a reading (remaining `rem` until `valid`) for window `id`: nothing spent since.
local function record(base, id, rem, now, valid)
  local key = base .. ':r:' .. id
  redis.call('HSET', key, 'rem', fmt(rem), 'at', fmt(now), 'until', fmt(valid), 'spent', 0)
  redis.call('PEXPIRE', key, math.max(1, math.ceil((valid - now + WINDOW_MARGIN) * 1000)))
end

-- Make window `id` exist from now on (a provider named it).
local function register(base, id)
  local meta = base .. ':meta'
  if redis.call('HEXISTS', meta, 'c:' .. id) == 0 then redis.call('HSET', meta, 'c:' .. id, '') end
  extend(meta, period_of(id) + DAY)
end
-- Whether every window can take `cost` now, and the soonest moment they all could.
local function room(windows, cost, now)
  local fits, soonest = true, now
  for _, w in ipairs(windows) do
    local amount = cost[w.kind]
    if w.remaining ~= nil and w.remaining < amount then fits = false end
    soonest = math.max(soonest, free_at(w, amount, now))
  end
  return fits, soonest
end
-- Charge `cost` to every window: {'1', the token window ids}.
local function charge(windows, cost, now)
  local ids = {'1'}
  for _, w in ipairs(windows) do
    local amount = cost[w.kind]
    if amount ~= 0 then
      redis.call('HINCRBYFLOAT', w.key, field(index(now, w.period)), amount)
      if w.seen ~= nil and now > w.seen then redis.call('HINCRBYFLOAT', w.rkey, 'spent', amount) end
    end
    extend(w.key, w.period * (BUCKETS + 1) / BUCKETS + WINDOW_MARGIN)
    if w.kind == 'tokens' then ids[#ids + 1] = w.id end
  end
  return ids
end
-- Add `delta` to what window `id` counted in its bucket of `at` (if that bucket still counts),
-- and to what was spent since its reading if the charge was made after it.
local function adjust(base, id, at, now, delta)
  if delta == 0 then return end
  local period, key, rkey = period_of(id), base .. ':w:' .. id, base .. ':r:' .. id
  local b = index(at, period)
  if edge(b, period) > now - period then
    if tonumber(redis.call('HINCRBYFLOAT', key, field(b), delta)) <= 0 then
      redis.call('HDEL', key, field(b))
    end
    extend(key, edge(b, period) + period - now + WINDOW_MARGIN)
  end
  local seen = num(redis.call('HGET', rkey, 'at'))
  if seen ~= nil and at > seen then redis.call('HINCRBYFLOAT', rkey, 'spent', delta) end
end
"""

# KEYS[1] budget base; ARGV now, day started, mode (reserve|force|peek), tokens,
# requests, then (window id, configured limit) pairs. -> {'1', token window ids...} when
# charged (`force`: whatever the room), else {'0', the soonest moment it all fits}.
RESERVE = (
    _PRELUDE
    + _BUDGET
    + """
local base, now, day, mode = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local cost = {tokens = tonumber(ARGV[4]), requests = tonumber(ARGV[5])}
local windows = budget(base, now, day, 6)
if mode ~= 'force' then
  local fits, soonest = room(windows, cost, now)
  if mode == 'peek' or not fits then return {'0', fmt(soonest)} end
end
return charge(windows, cost, now)
"""
)

# KEYS[1] budget base; ARGV now, charged at, tokens to add (or take away, when negative), the
# hold's token window ids...
SETTLE = (
    _PRELUDE
    + _BUDGET
    + """
local base, now, at, delta = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV do adjust(base, ARGV[i], at, now, delta) end
return 1
"""
)

_READINGS = """
-- Take readings from ARGV's (window id, limit, remaining, until) quads from `first`.
local function observe(base, now, first)
  for i = first, #ARGV, 4 do
    local id, limit, rem = ARGV[i], num(ARGV[i + 1]), num(ARGV[i + 2])
    register(base, id)
    if limit ~= nil and limit > 0 then
      redis.call('HSET', base .. ':meta', 'l:' .. id, fmt(limit))
    end
    if rem ~= nil then record(base, id, rem, now, tonumber(ARGV[i + 3])) end
  end
end
-- Nothing left until `valid` in the windows of `kind` ('' any) and `period` (nil any);
-- `named` ('' none) is the window both name, which exists from now on.
local function exhaust(base, now, valid, kind, period, named)
  if named ~= '' then register(base, named) end
  local flat = redis.call('HGETALL', base .. ':meta')
  for i = 1, #flat, 2 do
    local id = string.sub(flat[i], 3)
    if string.sub(flat[i], 1, 1) == 'c' and (kind == '' or string.match(id, '^(%a+)|') == kind)
        and (period == nil or period_of(id) == period) then
      record(base, id, 0, now, valid)
    end
  end
end
"""

_HEALTH = """
local h = KEYS[1]
local function get(name) return num(redis.call('HGET', h, name)) or 0 end
-- Out of rotation until `until_`; the key kept `keep` seconds at least.
local function cool(until_, keep)
  if until_ > get('c') then redis.call('HSET', h, 'c', fmt(until_)) end
  extend(h, keep)
end
-- CooldownBook.failed.
local function failed(now, retry, threshold, base, cap)
  local c, f, o, u, p = get('c'), get('f') + 1, get('o'), get('u'), get('p')
  if retry ~= nil and retry > c then c = retry end
  if p == 1 or f >= threshold then
    o = o + 1
    u = now + math.min(cap, base * 2 ^ (o - 1))
    p, f = 0, 0
  end
  redis.call('HSET', h, 'c', fmt(c), 'f', f, 'o', o, 'u', fmt(u), 'p', p)
  extend(h, math.max(c, u, now) - now + HEALTH_MARGIN)
end
-- CooldownBook.ready_at.
local function ready()
  local c, u = get('c'), get('u')
  if get('o') ~= 0 and u > c then return fmt(u) end
  return fmt(c)
end
"""

# KEYS[1] health, KEYS[2] budget base; ARGV now, retry at (''), then (window id, limit,
# remaining, until) quads ('' for unknown).
OBSERVE = (
    _PRELUDE
    + _BUDGET
    + _READINGS
    + _HEALTH
    + """
local now, retry = tonumber(ARGV[1]), num(ARGV[2])
observe(KEYS[2], now, 3)
if retry ~= nil then cool(retry, math.max(0, retry - now) + HEALTH_MARGIN) end
return 1
"""
)

# KEYS[1] health; ARGV now. -> 1 when a request may go (claiming the probe past a rest).
CLAIM = (
    _PRELUDE
    + _HEALTH
    + """
local now = tonumber(ARGV[1])
if now < get('c') then return 0 end
if get('o') == 0 then return 1 end
if now >= get('u') and get('p') == 0 then redis.call('HSET', h, 'p', 1) return 1 end
return 0
"""
)

# KEYS[1] health, KEYS[2] budget base; ARGV now, day started, tokens, requests, then
# (window id, configured limit) pairs. CLAIM, then RESERVE, as one: -> {'1', token window
# ids...} when claimed and charged ('3' in place of '1' when the claim is an open circuit's
# probe); {'0', c, f, o, u, p} (the health fields) when the member
# may not be tried; {'2', the soonest moment it all fits} when the windows have no room
# (nothing claimed).
BEGIN = (
    _PRELUDE
    + _BUDGET
    + _HEALTH
    + """
local base, now, day = KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])
local cost = {tokens = tonumber(ARGV[3]), requests = tonumber(ARGV[4])}
if now < get('c') or (get('o') ~= 0 and (now < get('u') or get('p') ~= 0)) then
  return {'0', unpack(redis.call('HMGET', h, 'c', 'f', 'o', 'u', 'p'))}
end
local windows = budget(base, now, day, 5)
local fits, soonest = room(windows, cost, now)
if not fits then return {'2', fmt(soonest)} end
local ids = charge(windows, cost, now)
if get('o') ~= 0 then  -- the open circuit's one probe
  redis.call('HSET', h, 'p', 1)
  ids[1] = '3'
end
return ids
"""
)

# KEYS[1] health.
RELEASE = (
    _PRELUDE
    + _HEALTH
    + """
if redis.call('EXISTS', h) == 1 then redis.call('HSET', h, 'p', 0) end
return 1
"""
)

# KEYS[1] health, KEYS[2] budget base; ARGV now, health (succeeded|failed|released), retry at,
# threshold, base, cap, rest until, exhausted until (these three '' for none), its kind and
# period ('' any), its window id ('' none), the hold's charge time, tokens to add (or take away),
# how many token window ids follow, the ids, then OBSERVE's quads. OBSERVE, EXHAUST, COOL,
# SUCCEEDED|FAILED|RELEASE and SETTLE as one: -> when the member may next be tried.
END = (
    _PRELUDE
    + _BUDGET
    + _READINGS
    + _HEALTH
    + """
local base, now, n = KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[14])
observe(base, now, 15 + n)
local valid, rest = num(ARGV[8]), num(ARGV[7])
if valid ~= nil then exhaust(base, now, valid, ARGV[9], num(ARGV[10]), ARGV[11]) end
if rest ~= nil then cool(rest, math.max(0, rest - now) + HEALTH_MARGIN) end
if ARGV[2] == 'failed' then
  failed(now, num(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
elseif redis.call('EXISTS', h) == 1 then
  if ARGV[2] == 'succeeded' then redis.call('HSET', h, 'f', 0, 'o', 0, 'p', 0)
  else redis.call('HSET', h, 'p', 0) end
end
local at, delta = tonumber(ARGV[12]), tonumber(ARGV[13])
for i = 15, 14 + n do adjust(base, ARGV[i], at, now, delta) end
return ready()
"""
)

# KEYS[1] health, KEYS[2] budget base; ARGV now, day started, then (window id, configured
# limit) pairs. -> the health fields c, f, o, u, p, when the member may next be tried, then
# WINDOWS' answer.
SNAPSHOT = (
    _PRELUDE
    + _BUDGET
    + _HEALTH
    + """
local out = redis.call('HMGET', h, 'c', 'f', 'o', 'u', 'p')
out[6] = ready()
for _, w in ipairs(budget(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), 3)) do
  out[#out + 1] = w.id
  out[#out + 1] = w.limit == nil and '' or fmt(w.limit)
  out[#out + 1] = fmt(w.used)
  out[#out + 1] = w.remaining == nil and '' or fmt(w.remaining)
  out[#out + 1] = w.period == DAY and fmt(w.today) or '0'
end
return out
"""
)

SCRIPTS: dict[str, str] = {
    "end": END,
    "snapshot": SNAPSHOT,
    "reserve": RESERVE,
    "settle": SETTLE,
    "observe": OBSERVE,
    "claim": CLAIM,
    "begin": BEGIN,
    "release": RELEASE,
}
