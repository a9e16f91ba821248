-- wrk script: a network's postbacks (GET, as Income Access and most
-- networks send them) for clicks recorded beforehand, one in ten repeating
-- an earlier transaction id (answered `duplicate`).
--
--   CT_TOKEN=<postback token> CT_CLICKS=<n> wrk -t1 -c64 -d10s -s bench/wrk/postback.lua http://127.0.0.1:8080
-- Clicks are `wrkseed%010d` for 0 <= i < CT_CLICKS (bench/ab.py records them).
local token = os.getenv("CT_TOKEN") or error("set CT_TOKEN")
local clicks = tonumber(os.getenv("CT_CLICKS") or "1000")
local tid = 0
local n = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() + tid * 104729)
end

request = function()
  n = n + 1
  local tx
  if n > 10 and n % 10 == 0 then
    tx = string.format("wrk-%d-%08d", tid, math.random(1, n - 1))
  else
    tx = string.format("wrk-%d-%08d", tid, n)
  end
  local click = string.format("wrkseed%010d", math.random(0, clicks - 1))
  return wrk.format("GET", string.format(
    "/postback/%s?sub1=%s&payout=%d.50&currency=EUR&txid=%s", token, click, math.random(1, 90), tx))
end

done = function(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
