"""The Lua scripts of :class:`~flask_serversession.stores.redis.RedisStore`: each keeps a rule of
the store contract on the server, in one atomic step (one round trip).

How the store calls each one (keys, arguments, result) is written above it.
"""

# The store's Lua scripts keep every rule of the contract on the server, in one step.
# Fields: values are ":" + name; metadata c, s, e, a, u, x. Times are whole milliseconds since
# the epoch, which Redis keeps as integers inside a small hash (9 bytes, not 18 characters).

_CHUNKED_HSET = """
local function hset_all(key, items, first, last)
  for i = first, last, 4000 do
    redis.call('HSET', key, unpack(items, i, math.min(i + 3999, last)))
  end
end
local function hdel_all(key, items, first, last)
  for i = first, last, 4000 do
    redis.call('HDEL', key, unpack(items, i, math.min(i + 3999, last)))
  end
end
local function live(key, now)
  local m = redis.call('HMGET', key, 'e', 'a', 'x')
  if not m[2] or m[3] then return nil end
  if now >= tonumber(m[1]) or now >= tonumber(m[2]) then return nil end
  return m
end
local function expire(key, until_, now)
  redis.call('PEXPIRE', key, math.max(1, tonumber(until_) - now))
end
-- The size of the hash's values (every name, its field without the ':', plus its value, in
-- bytes) and how many there are. Kept in the fields z and n by every write, so that a patch
-- reads the lengths of what it changes only; a hash written before they were kept is counted
-- once here, in full.
local function tally(key)
  local m = redis.call('HMGET', key, 'z', 'n')
  if m[1] and m[2] then return tonumber(m[1]), tonumber(m[2]) end
  local z, n = 0, 0
  local fields = redis.call('HKEYS', key)
  for i = 1, #fields do
    local field = fields[i]
    if string.byte(field, 1) == 58 then
      z = z + #field - 1 + redis.call('HSTRLEN', key, field)
      n = n + 1
    end
  end
  return z, n
end
-- The size and count of the values after setting the field/value pairs
-- items[first..last_set] and deleting the fields items[last_set + 1..last]: one HSTRLEN per
-- field changed (a stored value is JSON text, never empty: length 0 means absent).
local function after(key, items, first, last_set, last)
  local z, n = tally(key)
  local sizes = {}
  local function size(field)
    local known = sizes[field]
    if known == nil then
      local length = redis.call('HSTRLEN', key, field)
      known = length > 0 and #field - 1 + length or false
      sizes[field] = known
    end
    return known
  end
  for i = first, last_set, 2 do
    local old = size(items[i])
    if old then z = z - old else n = n + 1 end
    local new = #items[i] - 1 + #items[i + 1]
    z = z + new
    sizes[items[i]] = new
  end
  for i = last_set + 1, last do
    local old = size(items[i])
    if old then
      z = z - old
      n = n - 1
      sizes[items[i]] = false
    end
  end
  return z, n
end
-- Whether z bytes in n values fit the limits given as text ('' for none).
local function fits(z, n, max_size, max_keys)
  return (max_size == '' or z <= tonumber(max_size)) and (max_keys == '' or n <= tonumber(max_keys))
end
"""

# The touch, run only when the hash the store just read (a plain HGETALL) shows it is due; it
# checks again here, atomically, so that a session ended, expired or refreshed by another request
# between the two round trips is left alone (never revived, never moved back in time).
# KEYS[1]; ARGV: now, new expires, if_seen_before, new expires of a session bound to no user.
# 1 if applied, 0 if not.
TOUCH = """
local m = redis.call('HMGET', KEYS[1], 's', 'e', 'a', 'u', 'x')
if not m[3] or m[5] then return 0 end
local now = tonumber(ARGV[1])
local a = tonumber(m[3])
if tonumber(m[1]) >= tonumber(ARGV[3]) or now >= tonumber(m[2]) or now >= a then return 0 end
local e = ARGV[2]
if not m[4] then e = ARGV[4] end
if tonumber(e) > a then e = m[3] end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'e', e)
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(e) - now))
return 1
"""

# KEYS[1]; ARGV: ttl ms, then field/value pairs. 1 if created, 0 if the key exists.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 4000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[1])))
return 1
"""

# KEYS[1]; ARGV: now, expires, user ("-" unchanged, "" clear, else set), info ("" unchanged,
# else set), max size ("" none), max keys ("" none), n_set, n_set name/value pairs, names to
# delete. The absolute expiry if applied, 0 if no live session or the result would be over a
# limit.
PATCH = (
    _CHUNKED_HSET
    + """
local now = tonumber(ARGV[1])
local m = live(KEYS[1], now)
if not m then return 0 end
local last_set = 7 + 2 * tonumber(ARGV[7])
local z, n
if #ARGV > 7 or ARGV[5] ~= '' or ARGV[6] ~= '' then
  z, n = after(KEYS[1], ARGV, 8, last_set, #ARGV)
  if not fits(z, n, ARGV[5], ARGV[6]) then return 0 end
end
local e = ARGV[2]
if tonumber(e) > tonumber(m[2]) then e = m[2] end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'e', e)
if z then redis.call('HSET', KEYS[1], 'z', z, 'n', n) end
if last_set >= 8 then hset_all(KEYS[1], ARGV, 8, last_set) end
if #ARGV > last_set then hdel_all(KEYS[1], ARGV, last_set + 1, #ARGV) end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'u')
elseif ARGV[3] ~= '-' then redis.call('HSET', KEYS[1], 'u', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'i', ARGV[4]) end
expire(KEYS[1], e, now)
return m[2]
"""
)

# KEYS[1]; ARGV: now, tombstone until, max size ("" none), max keys ("" none), n_set, n_set
# name/value pairs, names to delete (the changes the caller will make: only their size is
# checked here). Replaces a live session by a tombstone and returns what it held (empty if
# there was no live session, or the changes would take it over a limit): the first step of
# moving it to a new key.
TAKE = (
    _CHUNKED_HSET
    + """
local now = tonumber(ARGV[1])
if not live(KEYS[1], now) then return {} end
if ARGV[3] ~= '' or ARGV[4] ~= '' then
  local z, n = after(KEYS[1], ARGV, 6, 5 + 2 * tonumber(ARGV[5]), #ARGV)
  if not fits(z, n, ARGV[3], ARGV[4]) then return {} end
end
local data = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'x', '1', 'e', ARGV[2])
expire(KEYS[1], ARGV[2], now)
return data
"""
)

# A user's index is a sorted set: member a store key, score (ms) the latest expiry the session
# under it may have from the write this entry was added for. It is written before the session
# is bound, so while the score is ahead, an absent or not yet bound session may be one still
# being written: a listing removes an entry only once its score has passed (see sessions_of).
# KEYS[1] the index; ARGV: store key, score, milliseconds the index must live at least. A score
# only ever grows: a concurrent write with a later expiry is never undone.
INDEX_USER = """
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not old or tonumber(old) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

# KEYS[1] a user's index; ARGV: pairs of a store key found not to be a live session of the
# user and the highest score at which it may go. The score is checked here, in the step that
# removes the entry: one written again meanwhile (a login or a bind under way) has a higher
# score and stays.
PRUNE_INDEX = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""

# KEYS[1]; ARGV: tombstone until.
TOMBSTONE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'x', '1', 'e', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[1]))
return 1
"""
