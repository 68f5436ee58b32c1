-- wrk script: POST signed Tiep reports, each for a distinct open visit.
-- TIEP_REPORTS names a file of lines "<X-Signature-256 value> <body>" (benches/webhooks.sh
-- writes it); each of wrk's threads takes every THREADS-th line, so no report is sent twice
-- while the file lasts. Count the rows afterwards: a 200 must be a stored result.
local threads = tonumber(os.getenv("THREADS") or "2")
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  lines = {}
  local n = 0
  for line in io.lines(os.getenv("TIEP_REPORTS")) do
    if n % threads == index then
      lines[#lines + 1] = line
    end
    n = n + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  local line = lines[(sent - 1) % #lines + 1]
  local signature, body = line:match("^(%S+) (.*)$")
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Signature-256"] = signature,
  }, body)
end
