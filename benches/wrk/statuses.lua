-- wrk script: benches/wrk/signed.lua's requests (SIGNED, SIGNATURE_HEADER, THREADS), each
-- answer's status counted; at the end one line per status: "status <code> <count>". Used where
-- what matters is which answers failed (benches/rolling_restart.sh, benches/pg_restart.sh).
dofile(os.getenv("WRK_SCRIPTS") .. "/signed.lua")

local threads_seen = {}
local signed_setup = setup
local signed_init = init

function setup(thread)
  signed_setup(thread)
  table.insert(threads_seen, thread)
end

function init(args)
  signed_init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads_seen) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("status %d %d\n", status, n))
  end
end
