/* store.c -- the Redis side: commit builder, fenced atomic commit, prefetch.
 *
 * What it does
 *  - sp_commit_t collects one batch's effects without doing I/O. Every byte
 *    handed in is COPIED into one growable arena; each Redis argument is an
 *    (offset, len) pair into it, kept in one vector per section. Arenas and
 *    vectors survive sp_commit_reset, so a steady-state batch allocates
 *    nothing. The whole commit is bounded (SP_COMMIT_MAX_BYTES): past it the
 *    builder turns sticky-bad and sp_store_commit_send refuses it.
 *  - sp_store_commit_send turns the commit into ONE
 *        EVALSHA <sha> 1 sp:{NS}:offsets <ARGV...>
 *    KEYS[1] is the offsets hash so Redis Cluster routes by the namespace
 *    hash tag; every other key carries the same tag. ARGV is a flat list of
 *    sections, each led by its count:
 *        prefix                                  "sp:{NS}"
 *        n_off,   n_off   x (field, expected, next, max_event_time)
 *        n_kv,    n_kv    x (key, ttl|"0"|"d", value)   "d" = DEL, "0" = no PX
 *        n_hash,  n_hash  x (key, ttl, n_incr, n_set, n_ratio,
 *                            n_incr x (field, delta), n_set x (field, value),
 *                            n_ratio x (field, kind, num_field, den_field))
 *        n_max,   n_max   x (key, value)      SET if greater
 *        n_min,   n_min   x (key, value)      SET if smaller
 *        n_health, x (field, delta)      n_gauge, x (field, value)
 *        n_pub,   n_pub   x message
 *        n_app,   n_app   x (key, bytes, rotate_at): APPEND; past rotate_at
 *                 bytes the key is renamed to <key>:old
 *        n_hincr, x (key, field, delta)  n_zadd, x (key, score, member)
 *        n_zrem,  x (key, member)        n_hput, x (key, field, value): HSET
 *    The Lua script (SCRIPT) checks the fence before any write, then applies
 *    everything and returns how many Redis commands it ran. Repeated incr of
 *    one field in a section is summed in Lua. HMGET/HSET/HDEL argument lists
 *    are chunked (SP_LUA_CHUNK fields per call) because Lua 5.1's unpack()
 *    stops near 8000 values.
 *  - sp_commit_hash_after computes, without I/O, what a hash holds after
 *    the commit from what it holds before: the same arithmetic as the
 *    script (Lua numbers are doubles, the same formats, the same quantile
 *    rule). The alerts use it to evaluate a window in the commit that
 *    closes it, so the outbox is written in that same atomic step. Lua
 *    5.1's tonumber and string.format('%d') are mirrored by strtod and a
 *    cast; test_store compares it with what Redis holds after the script.
 *  - Pipelining: *_send append with redisAppendCommandArgv and flush the
 *    output buffer; *_recv read replies in order. A small FIFO remembers the
 *    kind of every outstanding reply so a commit reply is never taken for a
 *    prefetch (asserted).
 *
 * Errors: a broken connection, a timeout or an unexpected reply gives
 * SP_ERR_IO and marks the store broken (sticky) until sp_store_reconnect,
 * which also reloads the script. The run loop then reloads its positions
 * from sp:{NS}:offsets, so nothing in flight needs replaying here.
 *
 * What it deliberately does not do
 *  - No EVAL fallback on NOSCRIPT: the script is loaded at every connect, so
 *    NOSCRIPT only follows a SCRIPT FLUSH. The EVALSHA was not run, so it is
 *    reported as SP_ERR_IO ("NOSCRIPT ...") and the reconnect reloads the
 *    script; the fence makes the retry safe even with commits pipelined
 *    behind it.
 *  - Redis does not roll back a script that fails half-way (WRONGTYPE on a
 *    key someone else wrote, out of memory). Offsets are written first, as
 *    step 2 of store.h says; such a failure is reported as SP_ERR_IO with the
 *    server's text and needs an operator.
 *  - Never logs, and never copies the password anywhere but the AUTH
 *    command. */
#include "aggregators/store.h"

#include <assert.h>
#include <errno.h>
#include <hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/err.h"

#define SP_COMMIT_MAX_BYTES ((size_t)64 << 20) /* arena + argument table */
#define SP_STORE_FIFO_MAX   64                 /* outstanding replies */
#define SP_GET_CHUNK        1000               /* keys per MGET/HMGET */

/* ------------------------------------------------------------------ */
/* the Lua script                                                      */
/* ------------------------------------------------------------------ */

static const char SCRIPT[] =
    "local A, CH, ncmd = ARGV, 1000, 0\n"
    "local function call(...) ncmd = ncmd + 1; return redis.call(...) end\n"
    "local function hmget(key, f)\n"
    "  local n = #f\n"
    "  if n == 0 then return {} end\n"
    "  if n <= CH then return call('HMGET', key, unpack(f)) end\n"
    "  local res = {}\n"
    "  for i = 1, n, CH do\n"
    "    local r = call('HMGET', key, unpack(f, i, math.min(i + CH - 1, n)))\n"
    "    for k = 1, #r do res[i + k - 1] = r[k] end\n"
    "  end\n"
    "  return res\n"
    "end\n"
    "local function hmany(cmd, key, f, step)\n"
    "  local n = #f\n"
    "  for i = 1, n, step do call(cmd, key, unpack(f, i, math.min(i + step - 1, n))) end\n"
    "end\n"
    "local function num(v)\n"
    "  if v == math.floor(v) and v > -9007199254740992 and v < 9007199254740992 then\n"
    "    return string.format('%d', v) end\n"
    "  return string.format('%.15g', v)\n"
    "end\n"
    "local G = 1.01 / 0.99\n"
    /* nearest-rank quantile of the histogram fields <name>:b<i> (hist.h) */
    "local function quantile(all, name, q)\n"
    "  local pfx, bs, n = name .. ':b', {}, 0\n"
    "  for i = 1, #all, 2 do\n"
    "    local f = all[i]\n"
    "    if string.sub(f, 1, #pfx) == pfx then\n"
    "      local sfx, c, v = string.sub(f, #pfx + 1), tonumber(all[i + 1]) or 0\n"
    "      if sfx == 'z' then v = 0 else local x = tonumber(sfx); if x then v = 2 * G ^ x / (G + 1) end end\n"
    "      if v and c > 0 then bs[#bs + 1] = {v, c}; n = n + c end\n"
    "    end\n"
    "  end\n"
    "  if n == 0 then return nil end\n"
    "  table.sort(bs, function(a, b) return a[1] < b[1] end)\n"
    "  local rank = math.ceil(q * n)\n"
    "  if rank < 1 then rank = 1 end\n"
    "  local acc = 0\n"
    "  for i = 1, #bs do acc = acc + bs[i][2]; if acc >= rank then return bs[i][1] end end\n"
    "  return bs[#bs][1]\n"
    "end\n"
    "local pre, own, p = A[1], A[2], 4\n"
    /* 0. the namespace lease (sp_store_set_owner): only its holder commits */
    "if own ~= '' then\n"
    "  local cur = redis.call('GET', pre .. ':owner')\n"
    "  if cur ~= own then\n"
    "    call('HINCRBY', pre .. ':health', 'fenced_commits', 1)\n"
    "    return redis.error_reply('FENCED owner ' .. (cur or '(none)'))\n"
    "  end\n"
    "  redis.call('PEXPIRE', pre .. ':owner', A[3])\n"
    "end\n"
    /* 1. fence, before any write */
    "local offkey = KEYS[1]\n"
    "local noff = tonumber(A[p]); p = p + 1\n"
    "local ob = p; p = p + 4 * noff\n"
    "if noff > 0 then\n"
    "  local fields = {}\n"
    "  for i = 1, noff do fields[i] = A[ob + 4 * (i - 1)] end\n"
    "  local stored = hmget(offkey, fields)\n"
    "  for i = 1, noff do\n"
    "    local s = stored[i]\n"
    "    if s and tonumber(s) ~= tonumber(A[ob + 4 * (i - 1) + 1]) then\n"
    /* the only write of a fenced commit: health fenced_commits */
    "      call('HINCRBY', pre .. ':health', 'fenced_commits', 1)\n"
    "      return redis.error_reply('FENCED ' .. fields[i] .. ' ' .. s)\n"
    "    end\n"
    "  end\n"
    /* 2. next offsets and watermarks */
    "  local hs, ws = {}, {}\n"
    "  for i = 1, noff do\n"
    "    hs[2 * i - 1] = fields[i]; hs[2 * i] = A[ob + 4 * (i - 1) + 2]\n"
    "  end\n"
    "  hmany('HSET', offkey, hs, 2 * CH)\n"
    "  local wmkey = pre .. ':wm'\n"
    "  local old = hmget(wmkey, fields)\n"
    "  for i = 1, noff do\n"
    "    local m = A[ob + 4 * (i - 1) + 3]\n"
    "    local o = tonumber(old[i])\n"
    "    if o and o > tonumber(m) then m = old[i] end\n"
    "    ws[2 * i - 1] = fields[i]; ws[2 * i] = m\n"
    "  end\n"
    "  hmany('HSET', wmkey, ws, 2 * CH)\n"
    "end\n"
    /* 3. entity state */
    "local nkv = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nkv do\n"
    "  local k, t = A[p], A[p + 1]\n"
    "  if t == 'd' then call('DEL', k)\n"
    "  elseif t == '0' then call('SET', k, A[p + 2])\n"
    "  else call('SET', k, A[p + 2], 'PX', t) end\n"
    "  p = p + 3\n"
    "end\n"
    /* 4. window hashes */
    "local nh = tonumber(A[p]); p = p + 1\n"
    "for h = 1, nh do\n"
    "  local key, ttl = A[p], A[p + 1]\n"
    "  local ni, ns, nr = tonumber(A[p + 2]), tonumber(A[p + 3]), tonumber(A[p + 4])\n"
    "  local ib = p + 5\n"
    "  local sb = ib + 2 * ni\n"
    "  local rb = sb + 2 * ns\n"
    "  p = rb + 4 * nr\n"
    "  local delta, order, no = {}, {}, 0\n"
    "  for i = ib, sb - 1, 2 do\n"
    "    local f, d = A[i], tonumber(A[i + 1])\n"
    "    local cur = delta[f]\n"
    "    if cur then delta[f] = cur + d else delta[f] = d; no = no + 1; order[no] = f end\n"
    "  end\n"
    "  local nincr, need = no, {}\n"
    "  for i = rb, p - 1, 4 do\n"
    "    if A[i + 1] ~= 'q' then for j = 2, 3 do\n"
    "      local f = A[i + j]\n"
    "      if delta[f] == nil and not need[f] then need[f] = true; no = no + 1; order[no] = f end\n"
    "    end end\n"
    "  end\n"
    "  local old = hmget(key, order)\n"
    "  local vals, out, nout, del = {}, {}, 0, {}\n"
    "  for i = 1, nincr do\n"
    "    local f = order[i]\n"
    "    local v = (tonumber(old[i]) or 0) + delta[f]\n"
    "    vals[f] = v\n"
    /* a per-dimension counter at 0 is absent (docs/METRICS.md) */
    "    if v == 0 and string.find(f, '|', 1, true) then del[#del + 1] = f\n"
    "    else out[nout + 1] = f; out[nout + 2] = num(v); nout = nout + 2 end\n"
    "  end\n"
    "  for i = nincr + 1, no do vals[order[i]] = tonumber(old[i]) or 0 end\n"
    "  for i = sb, rb - 1, 2 do\n"
    "    local f, v = A[i], A[i + 1]\n"
    "    vals[f] = tonumber(v) or 0\n"
    "    out[nout + 1] = f; out[nout + 2] = v; nout = nout + 2\n"
    "  end\n"
    "  local qs = {}\n"
    "  for i = rb, p - 1, 4 do\n"
    "    local f, kind = A[i], A[i + 1]\n"
    "    local nu, den = vals[A[i + 2]] or 0, vals[A[i + 3]] or 0\n"
    "    if kind == 'f' then den = nu + den end\n"
    "    if kind == 'q' then qs[#qs + 1] = i\n"
    "    elseif den ~= 0 then\n"
    "      local x, s = nu / den\n"
    "      if kind == 'p' then x = 100 * x end\n"
    "      if kind == 'a' then\n"
    "        if x >= 0 then x = math.floor(x + 0.5) else x = -math.floor(-x + 0.5) end\n"
    "        s = string.format('%d', x)\n"
    "      else s = string.format('%.6g', x) end\n"
    "      out[nout + 1] = f; out[nout + 2] = s; nout = nout + 2\n"
    "    else del[#del + 1] = f end\n"
    "  end\n"
    "  hmany('HSET', key, out, 2 * CH)\n"
    "  hmany('HDEL', key, del, CH)\n"
    "  if #qs > 0 then\n"
    "    local all, qo, qd = call('HGETALL', key), {}, {}\n"
    "    for _, i in ipairs(qs) do\n"
    "      local v = quantile(all, A[i + 2], tonumber(A[i + 3]))\n"
    "      if v then qo[#qo + 1] = A[i]; qo[#qo + 1] = string.format('%.6g', v)\n"
    "      else qd[#qd + 1] = A[i] end\n"
    "    end\n"
    "    hmany('HSET', key, qo, 2 * CH)\n"
    "    hmany('HDEL', key, qd, CH)\n"
    "  end\n"
    "  if ttl ~= '0' then call('PEXPIRE', key, ttl) end\n"
    "end\n"
    /* 5. max pointers */
    "local nmax = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nmax do\n"
    "  local k, v = A[p], A[p + 1]\n"
    "  local cur = call('GET', k)\n"
    "  local c = cur and tonumber(cur)\n"
    "  if not c or tonumber(v) > c then call('SET', k, v) end\n"
    "  p = p + 2\n"
    "end\n"
    "local nmin = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nmin do\n"
    "  local k, v = A[p], A[p + 1]\n"
    "  local cur = call('GET', k)\n"
    "  local c = cur and tonumber(cur)\n"
    "  if not c or tonumber(v) < c then call('SET', k, v) end\n"
    "  p = p + 2\n"
    "end\n"
    /* 6. health and gauges */
    "local nhl = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nhl do call('HINCRBY', pre .. ':health', A[p], A[p + 1]); p = p + 2 end\n"
    "local ng = tonumber(A[p]); p = p + 1\n"
    "if ng > 0 then\n"
    "  local g = {}\n"
    "  for i = 1, 2 * ng do g[i] = A[p + i - 1] end\n"
    "  hmany('HSET', pre .. ':gauges', g, 2 * CH)\n"
    "  p = p + 2 * ng\n"
    "end\n"
    /* 7. publish */
    "local np = tonumber(A[p]); p = p + 1\n"
    "for i = 1, np do call('PUBLISH', pre .. ':updates', A[p]); p = p + 1 end\n"
    /* 8. appends (the persisted recent event-id set), rotated past a size */
    "local na = tonumber(A[p]); p = p + 1\n"
    "for i = 1, na do\n"
    "  local k = A[p]\n"
    "  if call('APPEND', k, A[p + 1]) > tonumber(A[p + 2]) then call('RENAME', k, k .. ':old') end\n"
    "  p = p + 3\n"
    "end\n"
    /* 9. HINCRBY anywhere (gauges, cohorts), timers */
    "local nhi = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nhi do call('HINCRBY', A[p], A[p + 1], A[p + 2]); p = p + 3 end\n"
    "local nza = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nza do call('ZADD', A[p], A[p + 1], A[p + 2]); p = p + 3 end\n"
    "local nzr = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nzr do call('ZREM', A[p], A[p + 1]); p = p + 2 end\n"
    /* 10. HSET anywhere (alert state and outbox) */
    "local nhp = tonumber(A[p]); p = p + 1\n"
    "for i = 1, nhp do call('HSET', A[p], A[p + 1], A[p + 2]); p = p + 3 end\n"
    "return ncmd\n";

#define SP_LUA_CHUNK 1000 /* must match CH in SCRIPT */

/* ------------------------------------------------------------------ */
/* commit builder                                                      */
/* ------------------------------------------------------------------ */

typedef struct sp_arg {
    size_t off; /* into the arena */
    size_t len;
} sp_arg_t;

typedef struct sp_argvec {
    sp_arg_t *v;
    size_t n, cap;
} sp_argvec_t;

typedef struct sp_hash_sec {
    sp_arg_t key, ttl;
    size_t incr_lo, incr_hi; /* argument ranges in incr/set/ratio vectors */
    size_t set_lo, set_hi;
    size_t ratio_lo, ratio_hi;
} sp_hash_sec_t;

enum {
    SEC_OFF,
    SEC_KV,
    SEC_INCR,
    SEC_SET,
    SEC_RATIO,
    SEC_MAX,
    SEC_MIN,
    SEC_HEALTH,
    SEC_GAUGE,
    SEC_PUB,
    SEC_APPEND,
    SEC_HINCR,
    SEC_ZADD,
    SEC_ZREM,
    SEC_HPUT,
    SEC__COUNT
};

struct sp_commit {
    char *arena; /* all strings, copied */
    size_t used, cap;
    sp_argvec_t sec[SEC__COUNT];
    sp_hash_sec_t *hash;
    size_t nhash, hash_cap;
    int err; /* sticky: out of memory or over SP_COMMIT_MAX_BYTES */
};

static size_t commit_bytes(const sp_commit_t *c) {
    size_t b = c->used + c->nhash * sizeof(sp_hash_sec_t);
    for (int i = 0; i < SEC__COUNT; i++)
        b += c->sec[i].n * sizeof(sp_arg_t);
    return b;
}

/* Grow *p (elements of size sz) to hold at least need; bounded. */
static int grow(sp_commit_t *c, void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    if (c->err) return -1;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    if (commit_bytes(c) + (ncap - *cap) * sz > SP_COMMIT_MAX_BYTES * 2) {
        c->err = 1;
        return -1;
    }
    void *np = realloc(*p, ncap * sz);
    if (!np) {
        c->err = 1;
        return -1;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

static int commit_full(sp_commit_t *c, size_t more) {
    if (c->err) return 1;
    if (commit_bytes(c) + more > SP_COMMIT_MAX_BYTES) {
        c->err = 1;
        return 1;
    }
    return 0;
}

/* Copy bytes into the arena; returns the argument. On failure c->err. */
static sp_arg_t arena_put(sp_commit_t *c, const void *s, size_t len) {
    sp_arg_t a = {0, 0};
    if (commit_full(c, len + sizeof(sp_arg_t))) return a;
    if (grow(c, (void **)&c->arena, &c->cap, c->used + len + 1, 1)) return a;
    if (len) memcpy(c->arena + c->used, s, len);
    c->arena[c->used + len] = '\0';
    a.off = c->used;
    a.len = len;
    c->used += len + 1;
    return a;
}

static size_t fmt_i64(char *buf, int64_t v) {
    char tmp[24];
    size_t n = 0, i = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[i++] = '-';
    while (n)
        buf[i++] = tmp[--n];
    buf[i] = '\0';
    return i;
}

static sp_arg_t arena_i64(sp_commit_t *c, int64_t v) {
    char buf[24];
    size_t n = fmt_i64(buf, v);
    return arena_put(c, buf, n);
}

static void push(sp_commit_t *c, int sec, sp_arg_t a) {
    sp_argvec_t *av = &c->sec[sec];
    if (c->err) return;
    if (grow(c, (void **)&av->v, &av->cap, av->n + 1, sizeof(sp_arg_t))) return;
    av->v[av->n++] = a;
}

static void push_str(sp_commit_t *c, int sec, const char *s, size_t len) {
    sp_arg_t a = arena_put(c, s, len);
    push(c, sec, a);
}

static void push_i64(sp_commit_t *c, int sec, int64_t v) {
    sp_arg_t a = arena_i64(c, v);
    push(c, sec, a);
}

sp_commit_t *sp_commit_new(void) {
    return calloc(1, sizeof(sp_commit_t));
}

void sp_commit_reset(sp_commit_t *c) {
    c->used = 0;
    for (int i = 0; i < SEC__COUNT; i++)
        c->sec[i].n = 0;
    c->nhash = 0;
    c->err = 0;
}

void sp_commit_destroy(sp_commit_t *c) {
    if (!c) return;
    free(c->arena);
    for (int i = 0; i < SEC__COUNT; i++)
        free(c->sec[i].v);
    free(c->hash);
    free(c);
}

int sp_commit_is_empty(const sp_commit_t *c) {
    if (c->nhash) return 0;
    for (int i = 0; i < SEC__COUNT; i++)
        if (c->sec[i].n) return 0;
    return 1;
}

void sp_commit_offset(sp_commit_t *c, const char *field, int64_t expected, int64_t next,
                      int64_t max_event_time) {
    push_str(c, SEC_OFF, field, strlen(field));
    push_i64(c, SEC_OFF, expected);
    push_i64(c, SEC_OFF, next);
    push_i64(c, SEC_OFF, max_event_time);
}

void sp_commit_kv(sp_commit_t *c, const char *key, const void *value, size_t len, int64_t ttl_ms) {
    push_str(c, SEC_KV, key, strlen(key));
    if (!value) {
        push_str(c, SEC_KV, "d", 1);
        push_str(c, SEC_KV, "", 0);
        return;
    }
    push_i64(c, SEC_KV, ttl_ms > 0 ? ttl_ms : 0);
    push_str(c, SEC_KV, value, len);
}

void sp_commit_hash(sp_commit_t *c, const char *key, int64_t ttl_ms) {
    if (c->err) return;
    sp_hash_sec_t h;
    h.key = arena_put(c, key, strlen(key));
    h.ttl = arena_i64(c, ttl_ms > 0 ? ttl_ms : 0);
    h.incr_lo = h.incr_hi = c->sec[SEC_INCR].n;
    h.set_lo = h.set_hi = c->sec[SEC_SET].n;
    h.ratio_lo = h.ratio_hi = c->sec[SEC_RATIO].n;
    if (c->err || grow(c, (void **)&c->hash, &c->hash_cap, c->nhash + 1, sizeof(h))) return;
    c->hash[c->nhash++] = h;
}

/* The open hash section, after an incr/set/ratio call appended to sec. */
static void hash_close(sp_commit_t *c) {
    assert(c->nhash > 0 && "sp_commit_incr/hset/ratio before sp_commit_hash");
    if (c->nhash == 0) {
        c->err = 1;
        return;
    }
    sp_hash_sec_t *h = &c->hash[c->nhash - 1];
    h->incr_hi = c->sec[SEC_INCR].n;
    h->set_hi = c->sec[SEC_SET].n;
    h->ratio_hi = c->sec[SEC_RATIO].n;
}

void sp_commit_incr(sp_commit_t *c, const char *field, size_t field_len, int64_t delta) {
    if (c->err) return;
    push_str(c, SEC_INCR, field, field_len);
    push_i64(c, SEC_INCR, delta);
    hash_close(c);
}

void sp_commit_hset(sp_commit_t *c, const char *field, const char *value) {
    if (c->err) return;
    push_str(c, SEC_SET, field, strlen(field));
    push_str(c, SEC_SET, value, strlen(value));
    hash_close(c);
}

void sp_commit_hincr(sp_commit_t *c, const char *key, const char *field, int64_t delta) {
    push_str(c, SEC_HINCR, key, strlen(key));
    push_str(c, SEC_HINCR, field, strlen(field));
    push_i64(c, SEC_HINCR, delta);
}

void sp_commit_hput(sp_commit_t *c, const char *key, const char *field, const char *value) {
    push_str(c, SEC_HPUT, key, strlen(key));
    push_str(c, SEC_HPUT, field, strlen(field));
    push_str(c, SEC_HPUT, value, strlen(value));
}

void sp_commit_zadd(sp_commit_t *c, const char *key, const char *member, size_t len,
                    int64_t score) {
    push_str(c, SEC_ZADD, key, strlen(key));
    push_i64(c, SEC_ZADD, score);
    push_str(c, SEC_ZADD, member, len);
}

void sp_commit_zrem(sp_commit_t *c, const char *key, const char *member, size_t len) {
    push_str(c, SEC_ZREM, key, strlen(key));
    push_str(c, SEC_ZREM, member, len);
}

void sp_commit_quantile(sp_commit_t *c, const char *field, const char *hist_name, double q) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%.17g", q);
    sp_commit_ratio(c, field, 'q', hist_name, buf);
}

void sp_commit_ratio(sp_commit_t *c, const char *field, char kind, const char *num_field,
                     const char *den_field) {
    assert(kind == 'r' || kind == 'a' || kind == 'p' || kind == 'f' || kind == 'q');
    if (c->err) return;
    push_str(c, SEC_RATIO, field, strlen(field));
    push_str(c, SEC_RATIO, &kind, 1);
    push_str(c, SEC_RATIO, num_field, strlen(num_field));
    push_str(c, SEC_RATIO, den_field, strlen(den_field));
    hash_close(c);
}

void sp_commit_max(sp_commit_t *c, const char *key, int64_t value) {
    push_str(c, SEC_MAX, key, strlen(key));
    push_i64(c, SEC_MAX, value);
}

void sp_commit_min(sp_commit_t *c, const char *key, int64_t value) {
    push_str(c, SEC_MIN, key, strlen(key));
    push_i64(c, SEC_MIN, value);
}

void sp_commit_health(sp_commit_t *c, const char *field, int64_t delta) {
    push_str(c, SEC_HEALTH, field, strlen(field));
    push_i64(c, SEC_HEALTH, delta);
}

void sp_commit_append(sp_commit_t *c, const char *key, const void *bytes, size_t len,
                      int64_t rotate_at) {
    push_str(c, SEC_APPEND, key, strlen(key));
    push_str(c, SEC_APPEND, bytes, len);
    push_i64(c, SEC_APPEND, rotate_at);
}

void sp_commit_gauge(sp_commit_t *c, const char *field, int64_t value) {
    push_str(c, SEC_GAUGE, field, strlen(field));
    push_i64(c, SEC_GAUGE, value);
}

void sp_commit_publish(sp_commit_t *c, const char *message) {
    push_str(c, SEC_PUB, message, strlen(message));
}

/* A hash section with nothing in it is not sent (a family with no news). */
static int hash_empty(const sp_hash_sec_t *h) {
    return h->incr_hi == h->incr_lo && h->set_hi == h->set_lo && h->ratio_hi == h->ratio_lo;
}

static int64_t chunks(size_t n, size_t per) {
    return (int64_t)((n + per - 1) / per);
}

int64_t sp_commit_command_estimate(const sp_commit_t *c) {
    int64_t n = 0;
    size_t noff = c->sec[SEC_OFF].n / 4;
    /* HMGET + HSET on offsets, HMGET + HSET on watermarks */
    n += 4 * chunks(noff, SP_LUA_CHUNK);
    n += (int64_t)(c->sec[SEC_KV].n / 3);
    for (size_t i = 0; i < c->nhash; i++) {
        const sp_hash_sec_t *h = &c->hash[i];
        size_t ni = (h->incr_hi - h->incr_lo) / 2, ns = (h->set_hi - h->set_lo) / 2,
               nr = (h->ratio_hi - h->ratio_lo) / 4;
        /* upper bound: every incr and ratio input distinct */
        n += chunks(ni + 2 * nr, SP_LUA_CHUNK);
        n += chunks(ni + ns + nr, SP_LUA_CHUNK);
        if (!(h->ttl.len == 1 && c->arena[h->ttl.off] == '0')) n++;
    }
    n += (int64_t)(c->sec[SEC_MAX].n / 2) * 2; /* GET, maybe SET */
    n += (int64_t)(c->sec[SEC_MIN].n / 2) * 2;
    n += (int64_t)(c->sec[SEC_HEALTH].n / 2);
    n += chunks(c->sec[SEC_GAUGE].n / 2, SP_LUA_CHUNK);
    n += (int64_t)c->sec[SEC_PUB].n;
    n += (int64_t)(c->sec[SEC_APPEND].n / 3) * 2;
    n += (int64_t)(c->sec[SEC_HINCR].n / 3) + (int64_t)(c->sec[SEC_ZADD].n / 3) +
         (int64_t)(c->sec[SEC_ZREM].n / 2) + (int64_t)(c->sec[SEC_HPUT].n / 3);
    return n;
}

/* ------------------------------------------------------------------ */
/* a hash after the commit (what the script will write, without I/O)   */
/* ------------------------------------------------------------------ */

/* A hash being rewritten: fields and values (malloc'd; value NULL once
 * deleted), found through an open-addressing index. */
typedef struct hmap {
    char **f, **v;
    size_t n, cap;
    size_t *slot; /* index + 1; 0 empty */
    size_t nslot; /* power of two, > 2 n */
} hmap_t;

static uint64_t hm_hash(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static size_t *hm_slot(const hmap_t *m, const char *f, size_t len) {
    size_t i = (size_t)hm_hash(f, len) & (m->nslot - 1);
    for (;; i = (i + 1) & (m->nslot - 1)) {
        size_t k = m->slot[i];
        if (!k || (strlen(m->f[k - 1]) == len && !memcmp(m->f[k - 1], f, len))) return &m->slot[i];
    }
}

static int hm_grow(hmap_t *m) {
    if (m->n + 1 > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 64;
        char **nf = realloc(m->f, nc * sizeof(*nf));
        if (!nf) return -1;
        m->f = nf;
        char **nv = realloc(m->v, nc * sizeof(*nv));
        if (!nv) return -1;
        m->v = nv;
        m->cap = nc;
    }
    if (2 * (m->n + 1) < m->nslot) return 0;
    size_t ns = m->nslot ? 2 * m->nslot : 128;
    size_t *slot = calloc(ns, sizeof(*slot));
    if (!slot) return -1;
    free(m->slot);
    m->slot = slot;
    m->nslot = ns;
    for (size_t i = 0; i < m->n; i++) *hm_slot(m, m->f[i], strlen(m->f[i])) = i + 1;
    return 0;
}

/* The value of field f (NULL: absent). */
static const char *hm_get(const hmap_t *m, const char *f, size_t len) {
    if (!m->nslot) return NULL;
    size_t k = *hm_slot(m, f, len);
    return k ? m->v[k - 1] : NULL;
}

/* HSET (v) or HDEL (v NULL) of one field. */
static int hm_put(hmap_t *m, const char *f, size_t flen, const char *v, size_t vlen) {
    if (hm_grow(m)) return -1;
    size_t *s = hm_slot(m, f, flen);
    char *nv = NULL;
    if (v && !(nv = malloc(vlen + 1))) return -1;
    if (v) memcpy(nv, v, vlen), nv[vlen] = '\0';
    if (*s) {
        free(m->v[*s - 1]);
        m->v[*s - 1] = nv;
        return 0;
    }
    if (!v) return 0;
    char *nf = malloc(flen + 1);
    if (!nf) {
        free(nv);
        return -1;
    }
    memcpy(nf, f, flen), nf[flen] = '\0';
    m->f[m->n] = nf;
    m->v[m->n] = nv;
    *s = ++m->n;
    return 0;
}

static void hm_free(hmap_t *m) {
    for (size_t i = 0; i < m->n; i++) free(m->f[i]), free(m->v[i]);
    free(m->f);
    free(m->v);
    free(m->slot);
}

/* Lua 5.1's tonumber of a string (strtod, hex, surrounding blanks). */
static int lua_tonumber(const char *s, double *out) {
    char *end;
    if (!s) return 0;
    double d = strtod(s, &end);
    if (end == s) return 0;
    if (*end == 'x' || *end == 'X') d = (double)strtoul(s, &end, 16);
    while (*end == ' ' || (*end >= '\t' && *end <= '\r')) end++;
    if (*end) return 0;
    *out = d;
    return 1;
}

static double lua_num_or0(const char *s) {
    double d = 0;
    return lua_tonumber(s, &d) ? d : 0;
}

/* The script's num(): integral and exact as "%d", else "%.15g". */
static int lua_fmt_num(char *buf, size_t size, double v) {
    if (v == floor(v) && v > -9007199254740992.0 && v < 9007199254740992.0)
        return snprintf(buf, size, "%lld", (long long)v);
    return snprintf(buf, size, "%.15g", v);
}

#define ARG(a) (c->arena + (a).off)

/* Per field of one section: its new number (vals in the script). */
typedef struct hval {
    const char *f;
    size_t len;
    double v;
    int incr; /* summed from incr entries (written); 2: deleted (0 per dimension) */
} hval_t;

static hval_t *hv_find(hval_t *v, size_t n, const char *f, size_t len) {
    for (size_t i = n; i-- > 0;) /* small: a section's distinct fields */
        if (v[i].len == len && !memcmp(v[i].f, f, len)) return &v[i];
    return NULL;
}

typedef struct qbucket {
    double v, c;
} qbucket_t;

static int qb_cmp(const void *a, const void *b) {
    double x = ((const qbucket_t *)a)->v, y = ((const qbucket_t *)b)->v;
    return x < y ? -1 : x > y;
}

/* The script's quantile(): nearest rank over the buckets "<name>:b<i>". */
static int hm_quantile(const hmap_t *m, const char *name, double q, double *out) {
    const double G = 1.01 / 0.99;
    size_t pl = strlen(name), nb = 0;
    double n = 0;
    qbucket_t *b = malloc((m->n + 1) * sizeof(*b));
    if (!b) return -1;
    for (size_t i = 0; i < m->n; i++) {
        const char *f = m->f[i];
        if (!m->v[i] || strncmp(f, name, pl) || f[pl] != ':' || f[pl + 1] != 'b') continue;
        const char *sfx = f + pl + 2;
        double c = lua_num_or0(m->v[i]), x, v;
        if (!strcmp(sfx, "z")) v = 0;
        else if (lua_tonumber(sfx, &x)) v = 2 * pow(G, x) / (G + 1);
        else continue;
        if (c > 0) b[nb].v = v, b[nb].c = c, nb++, n += c;
    }
    int found = 0;
    if (n != 0) {
        qsort(b, nb, sizeof(*b), qb_cmp);
        double rank = ceil(q * n), acc = 0;
        if (rank < 1) rank = 1;
        *out = b[nb - 1].v;
        for (size_t i = 0; i < nb; i++) {
            acc += b[i].c;
            if (acc >= rank) {
                *out = b[i].v;
                break;
            }
        }
        found = 1;
    }
    free(b);
    return found;
}

/* Step 4 of the script for one section of hash m. */
static int hm_apply_section(hmap_t *m, const sp_commit_t *c, const sp_hash_sec_t *h) {
    const sp_argvec_t *inc = &c->sec[SEC_INCR], *set = &c->sec[SEC_SET], *rat = &c->sec[SEC_RATIO];
    size_t cap = (h->incr_hi - h->incr_lo) / 2 + (h->ratio_hi - h->ratio_lo) / 2 + 1, nv = 0;
    hval_t *vals = malloc(cap * sizeof(*vals));
    char buf[64];
    int rc = -1;
    if (!vals) return -1;
    /* incr: summed, added to the value before (all read before any write) */
    for (size_t i = h->incr_lo; i < h->incr_hi; i += 2) {
        const char *f = ARG(inc->v[i]);
        size_t len = inc->v[i].len;
        hval_t *x = hv_find(vals, nv, f, len);
        double d = lua_num_or0(ARG(inc->v[i + 1]));
        if (x) x->v += d; /* the deltas summed first, as the script does */
        else vals[nv++] = (hval_t){f, len, d, 1};
    }
    for (size_t i = 0; i < nv; i++) {
        vals[i].v = lua_num_or0(hm_get(m, vals[i].f, vals[i].len)) + vals[i].v;
        /* a per-dimension counter at 0: deleted after every write (2) */
        if (vals[i].v == 0 && memchr(vals[i].f, '|', vals[i].len)) vals[i].incr = 2;
    }
    /* the ratios' inputs not incremented: as they were */
    for (size_t i = h->ratio_lo; i < h->ratio_hi; i += 4) {
        if (*ARG(rat->v[i + 1]) == 'q') continue;
        for (int j = 2; j <= 3; j++) {
            const char *f = ARG(rat->v[i + j]);
            size_t len = rat->v[i + j].len;
            if (!hv_find(vals, nv, f, len))
                vals[nv++] = (hval_t){f, len, lua_num_or0(hm_get(m, f, len)), 0};
        }
    }
    for (size_t i = 0; i < nv; i++) {
        if (!vals[i].incr) continue;
        int n = lua_fmt_num(buf, sizeof(buf), vals[i].v);
        if (hm_put(m, vals[i].f, vals[i].len, buf, (size_t)n)) goto out;
    }
    for (size_t i = h->set_lo; i < h->set_hi; i += 2) {
        const char *f = ARG(set->v[i]);
        size_t len = set->v[i].len;
        hval_t *x = hv_find(vals, nv, f, len);
        double d = lua_num_or0(ARG(set->v[i + 1]));
        if (x) x->v = d;
        if (hm_put(m, f, len, ARG(set->v[i + 1]), set->v[i + 1].len)) goto out;
    }
    /* ratios from the new numbers */
    for (size_t i = h->ratio_lo; i < h->ratio_hi; i += 4) {
        char kind = *ARG(rat->v[i + 1]);
        if (kind == 'q') continue;
        hval_t *a = hv_find(vals, nv, ARG(rat->v[i + 2]), rat->v[i + 2].len);
        hval_t *b = hv_find(vals, nv, ARG(rat->v[i + 3]), rat->v[i + 3].len);
        double nu = a ? a->v : 0, den = b ? b->v : 0;
        int n = -1;
        if (kind == 'f') den = nu + den;
        if (den != 0) {
            double x = nu / den;
            if (kind == 'p') x = 100 * x;
            if (kind == 'a') {
                x = x >= 0 ? floor(x + 0.5) : -floor(-x + 0.5);
                n = snprintf(buf, sizeof(buf), "%ld", (long)x);
            } else {
                n = snprintf(buf, sizeof(buf), "%.6g", x);
            }
        }
        if (n >= 0 && hm_put(m, ARG(rat->v[i]), rat->v[i].len, buf, (size_t)n)) goto out;
    }
    /* then the HDEL (after every HSET) of the per-dimension counters at 0
     * and of the ratios with no denominator */
    for (size_t i = 0; i < nv; i++)
        if (vals[i].incr == 2 && hm_put(m, vals[i].f, vals[i].len, NULL, 0)) goto out;
    for (size_t i = h->ratio_lo; i < h->ratio_hi; i += 4) {
        char kind = *ARG(rat->v[i + 1]);
        if (kind == 'q') continue;
        hval_t *a = hv_find(vals, nv, ARG(rat->v[i + 2]), rat->v[i + 2].len);
        hval_t *b = hv_find(vals, nv, ARG(rat->v[i + 3]), rat->v[i + 3].len);
        double den = (b ? b->v : 0) + (kind == 'f' && a ? a->v : 0);
        if (den == 0 && hm_put(m, ARG(rat->v[i]), rat->v[i].len, NULL, 0)) goto out;
    }
    /* quantiles: all from the hash as written so far, then written (vals
     * reused: incr = the histogram was not empty) */
    size_t nq = 0;
    for (size_t i = h->ratio_lo; i < h->ratio_hi; i += 4) {
        if (*ARG(rat->v[i + 1]) != 'q') continue;
        double v = 0;
        int got = hm_quantile(m, ARG(rat->v[i + 2]), lua_num_or0(ARG(rat->v[i + 3])), &v);
        if (got < 0) goto out;
        vals[nq++] = (hval_t){ARG(rat->v[i]), rat->v[i].len, v, got};
    }
    for (int del = 0; del < 2; del++) /* HSET, then HDEL */
        for (size_t i = 0; i < nq; i++) {
            if (vals[i].incr == del) continue;
            int n = del ? 0 : snprintf(buf, sizeof(buf), "%.6g", vals[i].v);
            if (hm_put(m, vals[i].f, vals[i].len, del ? NULL : buf, (size_t)n)) goto out;
        }
    rc = 0;
out:
    free(vals);
    return rc;
}

int sp_commit_hash_after(const sp_commit_t *c, const char *key, int gauges,
                         const char *const *fields, const char *const *values, int n,
                         void (*cb)(void *opaque, const char *const *fields,
                                    const char *const *values, int count),
                         void *opaque) {
    hmap_t m = {0};
    int rc = -1;
    size_t klen = strlen(key);
    if (c->err) return -1; /* sections may be cut short; never sent anyway */
    for (int i = 0; i < n; i++)
        if (hm_put(&m, fields[i], strlen(fields[i]), values[i], strlen(values[i]))) goto out;
    for (size_t i = 0; i < c->nhash; i++) /* 4. window hashes, in order */
        if (!hash_empty(&c->hash[i]) && c->hash[i].key.len == klen &&
            !memcmp(ARG(c->hash[i].key), key, klen) && hm_apply_section(&m, c, &c->hash[i]))
            goto out;
    const sp_argvec_t *g = &c->sec[SEC_GAUGE], *hi = &c->sec[SEC_HINCR];
    for (size_t i = 0; gauges && i < g->n; i += 2) /* 6. gauges */
        if (hm_put(&m, ARG(g->v[i]), g->v[i].len, ARG(g->v[i + 1]), g->v[i + 1].len)) goto out;
    for (size_t i = 0; i < hi->n; i += 3) { /* 9. HINCRBY */
        if (hi->v[i].len != klen || memcmp(ARG(hi->v[i]), key, klen)) continue;
        char buf[32];
        const char *cur = hm_get(&m, ARG(hi->v[i + 1]), hi->v[i + 1].len);
        int64_t v = (cur ? strtoll(cur, NULL, 10) : 0) + strtoll(ARG(hi->v[i + 2]), NULL, 10);
        size_t len = fmt_i64(buf, v);
        if (hm_put(&m, ARG(hi->v[i + 1]), hi->v[i + 1].len, buf, len)) goto out;
    }
    const sp_argvec_t *hp = &c->sec[SEC_HPUT];
    for (size_t i = 0; i < hp->n; i += 3) /* 10. HSET */
        if (hp->v[i].len == klen && !memcmp(ARG(hp->v[i]), key, klen) &&
            hm_put(&m, ARG(hp->v[i + 1]), hp->v[i + 1].len, ARG(hp->v[i + 2]), hp->v[i + 2].len))
            goto out;
    {
        const char **f = malloc((2 * m.n + 1) * sizeof(*f));
        if (!f) goto out;
        size_t k = 0;
        for (size_t i = 0; i < m.n; i++)
            if (m.v[i]) k++;
        for (size_t i = 0, j = 0; i < m.n; i++)
            if (m.v[i]) f[j] = m.f[i], f[k + j] = m.v[i], j++;
        cb(opaque, f, f + k, (int)k);
        free(f);
    }
    rc = 0;
out:
    hm_free(&m);
    return rc;
}
#undef ARG

/* ------------------------------------------------------------------ */
/* the connection                                                      */
/* ------------------------------------------------------------------ */

enum { PEND_COMMIT = 1, PEND_MGET, PEND_MGET_EMPTY };

struct sp_store {
    sp_config_t cfg; /* copy: host, port, credentials, db, timeout, ns */
    redisContext *rc;
    int broken;      /* sticky I/O error: reconnect before use */
    char prefix[80]; /* sp:{NS} */
    char offsets_key[96];
    char wm_key[96];
    char sha[41];
    char owner[96];   /* lease holder id this store commits as ("": no lease) */
    char owner_key[96];
    int64_t lease_ms;
    /* outstanding replies, oldest first */
    unsigned char fifo[SP_STORE_FIFO_MAX];
    int fifo_head, fifo_len;
    /* reused send buffers */
    const char **argv;
    size_t *argvlen;
    size_t argv_cap;
    char *nums; /* formatted counts for the argument list */
    size_t nums_cap;
    int64_t last_commands;
};

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (!errstr || !errstr_size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* Record an I/O failure of the context; returns SP_ERR_IO. */
static int io_fail(sp_store_t *st, const char *what, char *errstr, size_t errstr_size) {
    st->broken = 1;
    set_err(errstr, errstr_size, "redis %s: %s", what,
            st->rc && st->rc->err ? st->rc->errstr : "connection lost");
    return SP_ERR_IO;
}

static void fifo_push(sp_store_t *st, int kind) {
    assert(st->fifo_len < SP_STORE_FIFO_MAX);
    st->fifo[(st->fifo_head + st->fifo_len) % SP_STORE_FIFO_MAX] = (unsigned char)kind;
    st->fifo_len++;
}

static int fifo_pop(sp_store_t *st) {
    assert(st->fifo_len > 0);
    int k = st->fifo[st->fifo_head];
    st->fifo_head = (st->fifo_head + 1) % SP_STORE_FIFO_MAX;
    st->fifo_len--;
    return k;
}

/* Blocking command; the reply is the caller's (freeReplyObject). */
static redisReply *command(sp_store_t *st, int argc, const char **argv, const size_t *lens) {
    return redisCommandArgv(st->rc, argc, argv, lens);
}

static int connect_once(sp_store_t *st, char *errstr, size_t errstr_size) {
    const sp_config_t *cfg = &st->cfg;
    int64_t tmo = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 5000;
    struct timeval tv = {(time_t)(tmo / 1000), (suseconds_t)((tmo % 1000) * 1000)};
    redisReply *r = NULL;
    int ret = SP_ERR_IO;

    st->broken = 1;
    st->fifo_head = st->fifo_len = 0;
    if (st->rc) {
        redisFree(st->rc);
        st->rc = NULL;
    }
    if (cfg->redis_unix_socket[0])
        st->rc = redisConnectUnixWithTimeout(cfg->redis_unix_socket, tv);
    else
        st->rc = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
    if (!st->rc) {
        set_err(errstr, errstr_size, "redis connect: out of memory");
        return SP_ERR_NOMEM;
    }
    if (st->rc->err) {
        if (cfg->redis_unix_socket[0])
            set_err(errstr, errstr_size, "redis connect %s: %s", cfg->redis_unix_socket,
                    st->rc->errstr);
        else
            set_err(errstr, errstr_size, "redis connect %s:%d: %s", cfg->redis_host,
                    cfg->redis_port, st->rc->errstr);
        goto out;
    }
    if (cfg->redis_timeout_ms > 0 && redisSetTimeout(st->rc, tv) != REDIS_OK) {
        set_err(errstr, errstr_size, "redis set timeout: %s", st->rc->errstr);
        goto out;
    }

    /* A configured user always logs in, even without a password (a nopass
     * user): never fall back to the default user silently. */
    if (cfg->redis_password[0] || cfg->redis_user[0]) {
        const char *av[3];
        size_t al[3];
        int ac = 0;
        av[ac] = "AUTH", al[ac++] = 4;
        if (cfg->redis_user[0]) av[ac] = cfg->redis_user, al[ac] = strlen(cfg->redis_user), ac++;
        av[ac] = cfg->redis_password, al[ac] = strlen(cfg->redis_password), ac++;
        r = command(st, ac, av, al);
        if (!r) {
            io_fail(st, "AUTH", errstr, errstr_size);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            /* the server's text never contains the password; the user is
             * not a secret and says which login failed */
            set_err(errstr, errstr_size, "redis AUTH as user '%s' failed: %s",
                    cfg->redis_user[0] ? cfg->redis_user : "default", r->str);
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (cfg->redis_db != 0) {
        char db[16];
        const char *av[2] = {"SELECT", db};
        size_t al[2] = {6, fmt_i64(db, cfg->redis_db)};
        r = command(st, 2, av, al);
        if (!r) {
            io_fail(st, "SELECT", errstr, errstr_size);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            set_err(errstr, errstr_size, "redis SELECT %d: %s", cfg->redis_db, r->str);
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    {
        const char *av[3] = {"SCRIPT", "LOAD", SCRIPT};
        size_t al[3] = {6, 4, sizeof(SCRIPT) - 1};
        r = command(st, 3, av, al);
        if (!r) {
            io_fail(st, "SCRIPT LOAD", errstr, errstr_size);
            goto out;
        }
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            set_err(errstr, errstr_size, "redis SCRIPT LOAD: %s",
                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            goto out;
        }
        memcpy(st->sha, r->str, 40);
        st->sha[40] = '\0';
    }
    st->broken = 0;
    ret = SP_OK;
out:
    if (r) freeReplyObject(r);
    return ret;
}

sp_store_t *sp_store_new(const sp_config_t *cfg, char *errstr, size_t errstr_size) {
    sp_store_t *st = calloc(1, sizeof(*st));
    if (!st) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    st->cfg = *cfg;
    const char *ns = cfg->ns[0] ? cfg->ns : "store";
    snprintf(st->prefix, sizeof(st->prefix), "sp:{%s}", ns);
    snprintf(st->offsets_key, sizeof(st->offsets_key), "%s:offsets", st->prefix);
    snprintf(st->wm_key, sizeof(st->wm_key), "%s:wm", st->prefix);
    snprintf(st->owner_key, sizeof(st->owner_key), "%s:owner", st->prefix);
    st->last_commands = -1;
    if (connect_once(st, errstr, errstr_size) != SP_OK) {
        sp_store_destroy(st);
        return NULL;
    }
    return st;
}

void sp_store_destroy(sp_store_t *st) {
    if (!st) return;
    if (st->rc) redisFree(st->rc);
    free(st->argv);
    free(st->argvlen);
    free(st->nums);
    /* the copied config holds the password: do not leave it in freed memory */
    memset(&st->cfg, 0, sizeof(st->cfg));
    free(st);
}

int sp_store_reconnect(sp_store_t *st, char *errstr, size_t errstr_size) {
    return connect_once(st, errstr, errstr_size);
}

const char *sp_store_ns(const sp_store_t *st) {
    return st->prefix;
}

int sp_store_pending(const sp_store_t *st) {
    return st->fifo_len;
}

int64_t sp_store_last_commit_commands(const sp_store_t *st) {
    return st->last_commands;
}

static int usable(sp_store_t *st, char *errstr, size_t errstr_size) {
    if (st->broken || !st->rc || st->rc->err) {
        st->broken = 1;
        set_err(errstr, errstr_size, "redis: connection broken, reconnect first");
        return SP_ERR_IO;
    }
    return SP_OK;
}

/* Write the whole output buffer without reading. */
static int flush(sp_store_t *st, const char *what, char *errstr, size_t errstr_size) {
    int done = 0;
    while (!done) {
        if (redisBufferWrite(st->rc, &done) != REDIS_OK)
            return io_fail(st, what, errstr, errstr_size);
    }
    return SP_OK;
}

static int parse_i64(const char *s, size_t len, int64_t *out) {
    char buf[32];
    char *end;
    if (len == 0 || len >= sizeof(buf)) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Blocking, pipelined: HMGET key fields (chunked) into out (-1 = absent).
 * Sends every chunk, then reads every reply. */
static int hmget_ints(sp_store_t *st, const char *cmd, const char *key, const char *const *names,
                      int n, int64_t *out, char *errstr, size_t errstr_size) {
    int is_mget = strcmp(cmd, "MGET") == 0;
    const char *av[SP_GET_CHUNK + 2];
    size_t al[SP_GET_CHUNK + 2];
    int nchunks = 0, ret = SP_OK;

    for (int lo = 0; lo < n; lo += SP_GET_CHUNK) {
        int hi = lo + SP_GET_CHUNK < n ? lo + SP_GET_CHUNK : n, ac = 0;
        av[ac] = cmd, al[ac++] = strlen(cmd);
        if (!is_mget) av[ac] = key, al[ac++] = strlen(key);
        for (int i = lo; i < hi; i++)
            av[ac] = names[i], al[ac++] = strlen(names[i]);
        if (redisAppendCommandArgv(st->rc, ac, av, al) != REDIS_OK)
            return io_fail(st, cmd, errstr, errstr_size);
        nchunks++;
    }
    for (int c = 0; c < nchunks; c++) {
        redisReply *r = NULL;
        int lo = c * SP_GET_CHUNK;
        if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r)
            return io_fail(st, cmd, errstr, errstr_size);
        if (r->type != REDIS_REPLY_ARRAY) {
            if (ret == SP_OK) {
                st->broken = 1;
                set_err(errstr, errstr_size, "redis %s %s: %s", cmd, is_mget ? "" : key,
                        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
                ret = SP_ERR_IO;
            }
            freeReplyObject(r);
            continue; /* keep reading so the pipeline stays in step */
        }
        for (size_t i = 0; i < r->elements && lo + (int)i < n; i++) {
            redisReply *e = r->element[i];
            out[lo + i] = -1;
            if (e->type == REDIS_REPLY_STRING && parse_i64(e->str, e->len, &out[lo + i]) != 0 &&
                ret == SP_OK) {
                set_err(errstr, errstr_size, "redis %s: '%s' is not an integer",
                        is_mget ? "key" : key, names[lo + i]);
                ret = SP_ERR_INVALID;
            }
        }
        freeReplyObject(r);
    }
    return ret;
}

int sp_store_load_offsets(sp_store_t *st, const char *const *fields, int n, int64_t *next_out,
                          int64_t *max_et_out, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    if (ret != SP_OK) return ret;
    ret = hmget_ints(st, "HMGET", st->offsets_key, fields, n, next_out, errstr, errstr_size);
    if (ret == SP_OK)
        ret = hmget_ints(st, "HMGET", st->wm_key, fields, n, max_et_out, errstr, errstr_size);
    return ret;
}

int sp_store_get_ints(sp_store_t *st, const char *const *keys, int n, int64_t *out, char *errstr,
                      size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    if (ret != SP_OK) return ret;
    return hmget_ints(st, "MGET", NULL, keys, n, out, errstr, errstr_size);
}

void sp_store_set_owner(sp_store_t *st, const char *owner, int64_t lease_ms) {
    snprintf(st->owner, sizeof(st->owner), "%s", owner ? owner : "");
    st->lease_ms = lease_ms;
}

/* Take (if free and acquire) or renew (if ours) sp:{NS}:owner; *held = 1 if
 * it is ours afterwards, and *holder gets the current holder's id. */
static const char LEASE_SCRIPT[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return {1, cur} end\n"
    "if not cur and ARGV[3] == '1' then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return {1, ARGV[1]}\n"
    "end\n"
    "return {0, cur or ''}\n";

static const char RELEASE_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

int sp_store_lease(sp_store_t *st, int acquire, int *held, char *holder, size_t holder_size,
                   char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    *held = 0;
    if (holder && holder_size) holder[0] = '\0';
    if (ret != SP_OK) return ret;
    if (!st->owner[0]) {
        *held = 1;
        return SP_OK;
    }
    redisReply *r = redisCommand(st->rc, "EVAL %s 1 %s %s %lld %s", LEASE_SCRIPT, st->owner_key,
                                 st->owner, (long long)st->lease_ms, acquire ? "1" : "0");
    if (!r) return io_fail(st, "EVAL lease", errstr, errstr_size);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        *held = r->element[0]->integer == 1;
        if (holder && holder_size && r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(holder, holder_size, "%s", r->element[1]->str);
    } else {
        set_err(errstr, errstr_size, "redis lease: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        ret = SP_ERR_IO;
    }
    freeReplyObject(r);
    return ret;
}

int sp_store_lease_release(sp_store_t *st, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    if (ret != SP_OK || !st->owner[0] || st->fifo_len) return ret;
    redisReply *r = redisCommand(st->rc, "EVAL %s 1 %s %s", RELEASE_SCRIPT, st->owner_key,
                                 st->owner);
    if (!r) return io_fail(st, "EVAL release", errstr, errstr_size);
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_get_bytes(sp_store_t *st, const char *key, char **out, size_t *len, char *errstr,
                       size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    *out = NULL;
    *len = 0;
    if (ret != SP_OK) return ret;
    redisReply *r = redisCommand(st->rc, "GET %s", key);
    if (!r) return io_fail(st, "GET", errstr, errstr_size);
    if (r->type == REDIS_REPLY_STRING && r->len > 0) {
        *out = malloc(r->len);
        if (!*out) {
            freeReplyObject(r);
            return SP_ERR_NOMEM;
        }
        memcpy(*out, r->str, r->len);
        *len = r->len;
    } else if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING) {
        set_err(errstr, errstr_size, "redis GET %s: %s", key,
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return SP_ERR_IO;
    }
    freeReplyObject(r);
    return SP_OK;
}

/* Make room for n arguments. */
static int argv_reserve(sp_store_t *st, size_t n) {
    if (n <= st->argv_cap) return 0;
    size_t cap = st->argv_cap ? st->argv_cap : 256;
    while (cap < n)
        cap *= 2;
    const char **av = realloc(st->argv, cap * sizeof(*av));
    if (!av) return -1;
    st->argv = av;
    size_t *al = realloc(st->argvlen, cap * sizeof(*al));
    if (!al) return -1;
    st->argvlen = al;
    st->argv_cap = cap;
    return 0;
}


int sp_store_commit_send(sp_store_t *st, const sp_commit_t *c, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    if (ret != SP_OK) return ret;
    if (c->err) {
        set_err(errstr, errstr_size, "commit too large (over %zu MiB) or out of memory",
                SP_COMMIT_MAX_BYTES >> 20);
        return SP_ERR_INVALID;
    }
    if (st->fifo_len >= SP_STORE_FIFO_MAX) {
        set_err(errstr, errstr_size, "too many outstanding replies");
        return SP_ERR_INVALID;
    }

    /* counts: 13 sections + 3 per hash + the lease TTL, each at most 20
     * digits + NUL */
    size_t nh = 0;
    for (size_t h = 0; h < c->nhash; h++)
        if (!hash_empty(&c->hash[h])) nh++;
    size_t ncounts = 14 + 3 * nh;
    if (ncounts * 24 > st->nums_cap) {
        char *nb = realloc(st->nums, ncounts * 24);
        if (!nb) {
            set_err(errstr, errstr_size, "out of memory");
            return SP_ERR_NOMEM;
        }
        st->nums = nb;
        st->nums_cap = ncounts * 24;
    }
    size_t argc = 5 + 2 + 13 + 5 * nh; /* + owner, lease TTL */
    for (int i = 0; i < SEC__COUNT; i++)
        argc += c->sec[i].n;
    if (argv_reserve(st, argc)) {
        set_err(errstr, errstr_size, "out of memory");
        return SP_ERR_NOMEM;
    }

    const char **av = st->argv;
    size_t *al = st->argvlen;
    size_t k = 0, nk = 0;
#define ARG_S(s, l) (av[k] = (s), al[k] = (l), k++)
#define ARG_A(a)    ARG_S(c->arena + (a).off, (a).len)
#define ARG_N(v)    (ARG_S(st->nums + nk * 24, fmt_i64(st->nums + nk * 24, (int64_t)(v))), nk++)
#define ARG_SEC(s)                                                                                 \
    do {                                                                                           \
        for (size_t i_ = 0; i_ < c->sec[s].n; i_++)                                                \
            ARG_A(c->sec[s].v[i_]);                                                                \
    } while (0)
    ARG_S("EVALSHA", 7);
    ARG_S(st->sha, 40);
    ARG_S("1", 1);
    ARG_S(st->offsets_key, strlen(st->offsets_key));
    ARG_S(st->prefix, strlen(st->prefix));
    ARG_S(st->owner, strlen(st->owner));
    ARG_N(st->lease_ms > 0 ? st->lease_ms : 1);
    ARG_N(c->sec[SEC_OFF].n / 4);
    ARG_SEC(SEC_OFF);
    ARG_N(c->sec[SEC_KV].n / 3);
    ARG_SEC(SEC_KV);
    ARG_N(nh);
    for (size_t h = 0; h < c->nhash; h++) {
        const sp_hash_sec_t *hs = &c->hash[h];
        if (hash_empty(hs)) continue;
        ARG_A(hs->key);
        ARG_A(hs->ttl);
        ARG_N((hs->incr_hi - hs->incr_lo) / 2);
        ARG_N((hs->set_hi - hs->set_lo) / 2);
        ARG_N((hs->ratio_hi - hs->ratio_lo) / 4);
        for (size_t i = hs->incr_lo; i < hs->incr_hi; i++)
            ARG_A(c->sec[SEC_INCR].v[i]);
        for (size_t i = hs->set_lo; i < hs->set_hi; i++)
            ARG_A(c->sec[SEC_SET].v[i]);
        for (size_t i = hs->ratio_lo; i < hs->ratio_hi; i++)
            ARG_A(c->sec[SEC_RATIO].v[i]);
    }
    ARG_N(c->sec[SEC_MAX].n / 2);
    ARG_SEC(SEC_MAX);
    ARG_N(c->sec[SEC_MIN].n / 2);
    ARG_SEC(SEC_MIN);
    ARG_N(c->sec[SEC_HEALTH].n / 2);
    ARG_SEC(SEC_HEALTH);
    ARG_N(c->sec[SEC_GAUGE].n / 2);
    ARG_SEC(SEC_GAUGE);
    ARG_N(c->sec[SEC_PUB].n);
    ARG_SEC(SEC_PUB);
    ARG_N(c->sec[SEC_APPEND].n / 3);
    ARG_SEC(SEC_APPEND);
    ARG_N(c->sec[SEC_HINCR].n / 3);
    ARG_SEC(SEC_HINCR);
    ARG_N(c->sec[SEC_ZADD].n / 3);
    ARG_SEC(SEC_ZADD);
    ARG_N(c->sec[SEC_ZREM].n / 2);
    ARG_SEC(SEC_ZREM);
    ARG_N(c->sec[SEC_HPUT].n / 3);
    ARG_SEC(SEC_HPUT);
#undef ARG_S
#undef ARG_A
#undef ARG_N
#undef ARG_SEC
    assert(k == argc && nk <= ncounts);

    if (redisAppendCommandArgv(st->rc, (int)k, av, al) != REDIS_OK)
        return io_fail(st, "EVALSHA", errstr, errstr_size);
    fifo_push(st, PEND_COMMIT);
    return flush(st, "EVALSHA", errstr, errstr_size);
}

int sp_store_commit_recv(sp_store_t *st, char *errstr, size_t errstr_size) {
    redisReply *r = NULL;
    int ret = usable(st, errstr, errstr_size);
    if (ret != SP_OK) return ret;
    assert(st->fifo_len > 0 && st->fifo[st->fifo_head] == PEND_COMMIT &&
           "commit_recv: the oldest outstanding reply is not a commit");
    if (st->fifo_len == 0 || st->fifo[st->fifo_head] != PEND_COMMIT) {
        set_err(errstr, errstr_size, "commit_recv: no commit reply outstanding");
        return SP_ERR_INVALID;
    }
    fifo_pop(st);
    if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r)
        return io_fail(st, "EVALSHA", errstr, errstr_size);
    if (r->type == REDIS_REPLY_INTEGER) {
        st->last_commands = r->integer;
        ret = SP_OK;
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "FENCED ", 7) == 0) {
        set_err(errstr, errstr_size, "fenced: %s", r->str + 7);
        ret = SP_ERR_FENCED;
    } else {
        /* NOSCRIPT (cache flushed), OOM, BUSY, a script error: the caller
         * reconnects (reloading the script) and reloads its positions */
        st->broken = 1;
        set_err(errstr, errstr_size, "redis commit: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        ret = SP_ERR_IO;
    }
    freeReplyObject(r);
    return ret;
}

int sp_store_mget_send(sp_store_t *st, const char *const *keys, const size_t *lens, int n,
                       char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    if (ret != SP_OK) return ret;
    if (st->fifo_len >= SP_STORE_FIFO_MAX) {
        set_err(errstr, errstr_size, "too many outstanding replies");
        return SP_ERR_INVALID;
    }
    if (n <= 0) { /* MGET needs a key: nothing to send, an empty reply */
        fifo_push(st, PEND_MGET_EMPTY);
        return SP_OK;
    }
    if (argv_reserve(st, (size_t)n + 1)) {
        set_err(errstr, errstr_size, "out of memory");
        return SP_ERR_NOMEM;
    }
    st->argv[0] = "MGET";
    st->argvlen[0] = 4;
    for (int i = 0; i < n; i++) {
        st->argv[i + 1] = keys[i];
        st->argvlen[i + 1] = lens ? lens[i] : strlen(keys[i]);
    }
    if (redisAppendCommandArgv(st->rc, n + 1, st->argv, st->argvlen) != REDIS_OK)
        return io_fail(st, "MGET", errstr, errstr_size);
    fifo_push(st, PEND_MGET);
    return flush(st, "MGET", errstr, errstr_size);
}

int sp_store_mget_recv(sp_store_t *st,
                       void (*cb)(void *opaque, int idx, const char *val, size_t len), void *opaque,
                       char *errstr, size_t errstr_size) {
    redisReply *r = NULL;
    int ret = usable(st, errstr, errstr_size);
    if (ret != SP_OK) return ret;
    assert(st->fifo_len > 0 && st->fifo[st->fifo_head] != PEND_COMMIT &&
           "mget_recv: the oldest outstanding reply is not a prefetch");
    if (st->fifo_len == 0 || st->fifo[st->fifo_head] == PEND_COMMIT) {
        set_err(errstr, errstr_size, "mget_recv: no prefetch reply outstanding");
        return SP_ERR_INVALID;
    }
    if (fifo_pop(st) == PEND_MGET_EMPTY) return SP_OK;
    if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r)
        return io_fail(st, "MGET", errstr, errstr_size);
    if (r->type != REDIS_REPLY_ARRAY) {
        st->broken = 1;
        set_err(errstr, errstr_size, "redis MGET: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return SP_ERR_IO;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING)
            cb(opaque, (int)i, e->str, e->len);
        else
            cb(opaque, (int)i, NULL, 0);
    }
    freeReplyObject(r);
    return SP_OK;
}

/* ------------------------------------------------------------------ */
/* timers                                                              */
/* ------------------------------------------------------------------ */

/* Due members, their scores and state values in one round trip; then the
 * score of the first member not returned. */
static const char TIMERS_SCRIPT[] =
    "local m = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])\n"
    "local out = {}\n"
    "for i = 1, #m, 2 do\n"
    "  out[#out + 1] = m[i]; out[#out + 1] = m[i + 1]\n"
    "  out[#out + 1] = redis.call('GET', ARGV[3] .. m[i])\n"
    "end\n"
    "local r = #m / 2\n"
    "local nx = redis.call('ZRANGE', KEYS[1], r, r, 'WITHSCORES')\n"
    "out[#out + 1] = nx[2] or ''\n"
    "return out\n";

static int64_t reply_i64(const redisReply *r) {
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return (int64_t)r->integer;
    if (r->type == REDIS_REPLY_STRING && r->len) return (int64_t)strtod(r->str, NULL);
    return 0;
}

int sp_store_timers_due(sp_store_t *st, const char *key, const char *value_prefix, int64_t upto,
                        int limit,
                        void (*cb)(void *opaque, const char *member, size_t mlen, int64_t score,
                                   const char *val, size_t vlen),
                        void *opaque, int64_t *next_out, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    *next_out = INT64_MAX;
    if (ret != SP_OK) return ret;
    redisReply *r = redisCommand(st->rc, "EVAL %s 1 %s %lld %d %s", TIMERS_SCRIPT, key,
                                 (long long)upto, limit, value_prefix);
    if (!r) return io_fail(st, "EVAL timers", errstr, errstr_size);
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 1) {
        set_err(errstr, errstr_size, "redis timers: %s",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        st->broken = 1;
        return SP_ERR_IO;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 3) {
        const redisReply *m = r->element[i], *sc = r->element[i + 1], *v = r->element[i + 2];
        if (m->type != REDIS_REPLY_STRING) continue;
        int has = v->type == REDIS_REPLY_STRING;
        cb(opaque, m->str, m->len, reply_i64(sc), has ? v->str : NULL, has ? v->len : 0);
    }
    const redisReply *nx = r->element[r->elements - 1];
    if (nx->type == REDIS_REPLY_STRING && nx->len) *next_out = reply_i64(nx);
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_zmin(sp_store_t *st, const char *key, int64_t *out, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    *out = INT64_MAX;
    if (ret != SP_OK) return ret;
    redisReply *r = redisCommand(st->rc, "ZRANGE %s 0 0 WITHSCORES", key);
    if (!r) return io_fail(st, "ZRANGE", errstr, errstr_size);
    if (r->type == REDIS_REPLY_ARRAY) {
        if (r->elements == 2) *out = reply_i64(r->element[1]);
    } else {
        set_err(errstr, errstr_size, "redis ZRANGE %s: %s", key,
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return SP_ERR_IO;
    }
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_hgetall(sp_store_t *st, const char *const *keys, int n,
                     void (*cb)(void *opaque, int idx, const char *const *fields,
                                const char *const *values, int count),
                     void *opaque, char *errstr, size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    if (ret != SP_OK) return ret;
    for (int i = 0; i < n; i++)
        if (redisAppendCommand(st->rc, "HGETALL %s", keys[i]) != REDIS_OK)
            return io_fail(st, "HGETALL", errstr, errstr_size);
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r)
            return io_fail(st, "HGETALL", errstr, errstr_size);
        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
            if (ret == SP_OK) {
                set_err(errstr, errstr_size, "redis HGETALL %s: %s", keys[i],
                        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
                ret = SP_ERR_IO;
            }
            freeReplyObject(r);
            continue; /* read every reply: the pipeline stays in step */
        }
        int cnt = (int)(r->elements / 2);
        const char **f = cnt ? malloc((size_t)cnt * 2 * sizeof(*f)) : NULL;
        if (cnt && !f) {
            freeReplyObject(r);
            if (ret == SP_OK) ret = SP_ERR_NOMEM;
            continue;
        }
        for (int k = 0; k < cnt; k++) {
            const redisReply *a = r->element[2 * k], *b = r->element[2 * k + 1];
            f[k] = a->type == REDIS_REPLY_STRING ? a->str : "";
            f[cnt + k] = b->type == REDIS_REPLY_STRING ? b->str : "";
        }
        if (ret == SP_OK) cb(opaque, i, f, f ? f + cnt : NULL, cnt);
        free(f);
        freeReplyObject(r);
    }
    return ret;
}

int sp_store_hwrite(sp_store_t *st, const sp_hwrite_t *w, int nw, char *errstr,
                    size_t errstr_size) {
    int ret = usable(st, errstr, errstr_size);
    assert(st->fifo_len == 0 && "blocking call with pipelined replies outstanding");
    if (ret != SP_OK) return ret;
    int ncmd = 0;
    if (redisAppendCommand(st->rc, "MULTI") != REDIS_OK)
        return io_fail(st, "MULTI", errstr, errstr_size);
    for (int i = 0; i < nw; i++) {
        if (w[i].n == 0) continue;
        size_t need = 2 + (size_t)w[i].n * 2;
        if (argv_reserve(st, need)) return SP_ERR_NOMEM;
        size_t ac = 0;
        const char *cmd = w[i].del ? "HDEL" : "HSET";
        st->argv[ac] = cmd, st->argvlen[ac++] = 4;
        st->argv[ac] = w[i].key, st->argvlen[ac++] = strlen(w[i].key);
        for (int k = 0; k < w[i].n; k++) {
            st->argv[ac] = w[i].fields[k], st->argvlen[ac++] = strlen(w[i].fields[k]);
            if (!w[i].del) st->argv[ac] = w[i].values[k], st->argvlen[ac++] = strlen(w[i].values[k]);
        }
        if (redisAppendCommandArgv(st->rc, (int)ac, st->argv, st->argvlen) != REDIS_OK)
            return io_fail(st, cmd, errstr, errstr_size);
        ncmd++;
    }
    if (redisAppendCommand(st->rc, "EXEC") != REDIS_OK)
        return io_fail(st, "EXEC", errstr, errstr_size);
    for (int i = 0; i < ncmd + 2; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->rc, (void **)&r) != REDIS_OK || !r)
            return io_fail(st, "MULTI/EXEC", errstr, errstr_size);
        int last = i == ncmd + 1;
        int ok = last ? r->type == REDIS_REPLY_ARRAY : r->type != REDIS_REPLY_ERROR;
        if (!ok && ret == SP_OK) {
            set_err(errstr, errstr_size, "redis MULTI/EXEC: %s",
                    r->type == REDIS_REPLY_ERROR ? r->str : "transaction aborted");
            ret = SP_ERR_IO;
        }
        freeReplyObject(r);
    }
    return ret;
}
