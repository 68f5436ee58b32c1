-- wrk script: POST MediQuo "consultation finished" deliveries, each a new consultation for the
-- patient MEDIQUO_PATIENT, with MediQuo's shared signature MEDIQUO_SIGNATURE. RUN_TAG keeps
-- the consultation ids of one run apart from another's. Count the rows afterwards.
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  sent = 0
  tag = os.getenv("RUN_TAG") or "wrk"
  patient = os.getenv("MEDIQUO_PATIENT")
  headers = {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Signature"] = os.getenv("MEDIQUO_SIGNATURE"),
  }
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"type":"patient_consultation_finished","occurred_on":1700000000,' ..
    '"payload":{"consultation":{"id":"%s-%d-%d","type":"chat"},' ..
    '"reports":[{"id":"r-%d","type":"soap","content":{"plan":"load test"}}],' ..
    '"patient":{"code":"%s"}}}',
    tag, index, sent, sent, patient)
  return wrk.format("POST", nil, headers, body)
end
