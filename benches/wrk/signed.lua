-- wrk script: POST signed requests, each body once (a Tiep report for a distinct open visit, a
-- Hint handshake that would be refused as a replay if sent twice). SIGNED names a file of lines
-- "<signature header value> <body>", or "<signature> <path> <body>" where each request has a
-- path of its own (a practice's webhook; benches/webhooks.sh and benches/handshakes.sh write them),
-- SIGNATURE_HEADER the header it goes in; each of wrk's threads takes every THREADS-th line, so
-- no body is sent twice while the file lasts (past its end they come round again). Count the
-- rows afterwards: a 200 must be a stored result.
-- The requests are formatted once, before the run: wrk shares the two cores with the server,
-- and formatting each request as it is sent cost wrk ~20 µs of CPU per request.
local threads = tonumber(os.getenv("THREADS") or "2")
local header = os.getenv("SIGNATURE_HEADER")
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  requests = {}
  local n = 0
  for line in io.lines(os.getenv("SIGNED")) do
    if n % threads == index then
      local signature, path, body = line:match("^(%S+) (/%S+) (.*)$")
      if not signature then
        signature, body = line:match("^(%S+) (.*)$")
      end
      requests[#requests + 1] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        [header] = signature,
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
