-- wrk script: POST MediQuo "consultation finished" deliveries, each a new consultation for the
-- patient MEDIQUO_PATIENT, with MediQuo's shared signature MEDIQUO_SIGNATURE. RUN_TAG keeps
-- the consultation ids of one run apart from another's. Count the rows afterwards.
-- The request's head is formatted once: wrk shares the two cores with the server, so each
-- request only formats its body.
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
end

function request()
  sent = sent + 1
  local body = string.format(template, sent, sent)
  return head .. #body .. "\r\n\r\n" .. body
end
