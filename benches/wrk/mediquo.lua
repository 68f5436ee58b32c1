-- wrk script: POST MediQuo "consultation finished" deliveries, each a new consultation, to the
-- practices of MEDIQUO_TARGETS in turn (a file of "<practice id> <patient id>" lines: each to
-- its practice's webhook, for one of its patients), with MediQuo's shared signature
-- MEDIQUO_SIGNATURE. RUN_TAG keeps
-- the consultation ids of one run apart from another's. Count the rows afterwards.
-- The requests are formatted before the run, as Tiep's are (wrk shares the two cores with the
-- server): PREPARED of them per thread (benches/webhooks.sh sets it from the run's length),
-- and any beyond formatted as they are sent, so no consultation is sent twice.
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  sent = 0
  local tag = os.getenv("RUN_TAG") or "wrk"
  targets = {}
  for line in io.lines(os.getenv("MEDIQUO_TARGETS")) do
    local practice, patient = line:match("^(%S+) (%S+)$")
    targets[#targets + 1] = {
      head = "POST /webhooks/mediquo/" .. practice .. " HTTP/1.1\r\n" ..
        "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n" ..
        "Content-Type: application/json\r\n" ..
        "X-Webhook-Signature: " .. os.getenv("MEDIQUO_SIGNATURE") .. "\r\n" ..
        "Content-Length: ",
      patient = patient,
    }
  end
  template = '{"type":"patient_consultation_finished","occurred_on":1700000000,' ..
    '"payload":{"consultation":{"id":"' .. tag .. '-' .. index .. '-%d","type":"chat"},' ..
    '"reports":[{"id":"r-%d","type":"soap","content":{"plan":"load test"}}],' ..
    '"patient":{"code":"%s"}}}'
  requests = {}
  for i = 1, tonumber(os.getenv("PREPARED") or "0") do
    requests[i] = format(i)
  end
end

function format(n)
  local target = targets[n % #targets + 1]
  local body = string.format(template, n, n, target.patient)
  return target.head .. #body .. "\r\n\r\n" .. body
end

function request()
  sent = sent + 1
  return requests[sent] or format(sent)
end
