-- wrk script: POST signed Tiep reports, each for a distinct open visit.
-- TIEP_REPORTS names a file of lines "<X-Signature-256 value> <body>" (benches/webhooks.sh
-- writes it); each of wrk's threads takes every THREADS-th line, so no report is sent twice
-- while the file lasts. Count the rows afterwards: a 200 must be a stored result.
-- The requests are formatted once, before the run: wrk shares the two cores with the server,
-- and formatting each request as it is sent cost wrk ~20 µs of CPU per request.
local threads = tonumber(os.getenv("THREADS") or "2")
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  requests = {}
  local n = 0
  for line in io.lines(os.getenv("TIEP_REPORTS")) do
    if n % threads == index then
      local signature, body = line:match("^(%S+) (.*)$")
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Signature-256"] = signature,
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
