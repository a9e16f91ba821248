-- wrk script: the tag's collector traffic, one event per request as the tag
-- sends it (text/plain JSON beacon with an Origin): four PageViews for one
-- OutboundClick, 20,000 visitors, landings with utm parameters and ad click
-- ids, varied user agents. Every event id is unique (thread, counter).
--
--   CT_PROPERTY=<property id> wrk -t1 -c64 -d10s -s bench/wrk/collect.lua http://127.0.0.1:8080
local property = os.getenv("CT_PROPERTY") or error("set CT_PROPERTY")
local origin = os.getenv("CT_ORIGIN") or "https://bench.example"

local agents = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
}
local landings = {
  "?utm_source=facebook&utm_medium=paid&utm_campaign=spring_%d&fbclid=IwAR%08x",
  "?utm_source=google&utm_medium=cpc&utm_campaign=brand_%d&gclid=Cj0K%08x",
  "?utm_source=tiktok&utm_medium=paid&utm_campaign=video_%d&ttclid=E.C.P.%08x",
  "",
}
local pages = { "/", "/bingo", "/slots", "/reviews/gala", "/bonus" }

local tid = 0
local n = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() + tid * 7919)
end

local function now_ms()
  return os.time() * 1000
end

request = function()
  n = n + 1
  local visitor = string.format("v_wrk_%06d", math.random(0, 19999))
  local page = pages[math.random(#pages)]
  local url = origin .. page
  local ev
  if n % 5 == 0 then
    local pv = string.format("wrkpv-%d-%08d", tid, n - 1)
    local click = string.format("wrkclk%02d%010d", tid, n)
    ev = string.format(
      '{"event_id":"wrkck-%d-%08d","name":"OutboundClick","ts":%d,"visitor_id":"%s","url":"%s",' ..
      '"pageview_id":"%s","click_id":"%s","link":{"url":"https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c=%s",' ..
      '"tracking_group":"incomeaccess","text":"Claim bonus"}}',
      tid, n, now_ms(), visitor, url, pv, click, click)
  else
    local landing = landings[math.random(#landings)]
    if landing ~= "" then
      url = url .. string.format(landing, math.random(0, 19), math.random(0, 0x7fffffff))
    end
    ev = string.format(
      '{"event_id":"wrkpv-%d-%08d","name":"PageView","ts":%d,"visitor_id":"%s","url":"%s",' ..
      '"referrer":"https://www.google.com/","title":"Best bingo sites"}',
      tid, n, now_ms(), visitor, url)
  end
  local body = '{"property_id":"' .. property .. '","events":[' .. ev .. ']}'
  return wrk.format("POST", "/collect", {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["Origin"] = origin,
    ["User-Agent"] = agents[math.random(#agents)],
  }, body)
end

done = function(summary, latency, requests)
  io.write(string.format("non-2xx: %d\n", summary.errors.status))
end
