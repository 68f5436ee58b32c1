-- wrk script: POST MediQuo "consultation finished" deliveries, each a new consultation for the
-- patient MEDIQUO_PATIENT, with MediQuo's shared signature MEDIQUO_SIGNATURE. RUN_TAG keeps
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
  local patient = os.getenv("MEDIQUO_PATIENT")
  head = "POST " .. wrk.path .. " HTTP/1.1\r\n" ..
    "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n" ..
    "Content-Type: application/json\r\n" ..
    "X-Webhook-Signature: " .. os.getenv("MEDIQUO_SIGNATURE") .. "\r\n" ..
    "Content-Length: "
  template = '{"type":"patient_consultation_finished","occurred_on":1700000000,' ..
    '"payload":{"consultation":{"id":"' .. tag .. '-' .. index .. '-%d","type":"chat"},' ..
    '"reports":[{"id":"r-%d","type":"soap","content":{"plan":"load test"}}],' ..
    '"patient":{"code":"' .. patient .. '"}}}'
  requests = {}
  for i = 1, tonumber(os.getenv("PREPARED") or "0") do
    requests[i] = format(i)
  end
end

function format(n)
  local body = string.format(template, n, n)
  return head .. #body .. "\r\n\r\n" .. body
end

function request()
  sent = sent + 1
  return requests[sent] or format(sent)
end
