-- wrk script: POST signed Hint handshakes, each body once (Chartbridge refuses a signed body it
-- has accepted before, as a replay). HANDSHAKES names a file of lines "<X-Hint-Signature value>
-- <body>" (benches/handshakes.sh writes it); each of wrk's threads takes every THREADS-th line.
-- The file must hold more bodies than a run sends: past its end the bodies come round again
-- and are answered 401 (counted as non-2xx).
-- The requests are formatted once, before the run, as in tiep.lua.
local threads = tonumber(os.getenv("THREADS") or "2")
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  requests = {}
  local n = 0
  for line in io.lines(os.getenv("HANDSHAKES")) do
    if n % threads == index then
      local signature, body = line:match("^(%S+) (.*)$")
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Hint-Signature"] = signature,
      }, body)
    end
    n = n + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end
