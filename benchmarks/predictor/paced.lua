-- wrk script: as post.lua, each connection pausing the milliseconds of the third argument
-- after each answer, for a steady rate below the peak (about connections * 1000 / pause
-- requests a second while answers take much less than the pause).
--   wrk -s benchmarks/predictor/paced.lua URL -- body.json "Bearer KEY" 25

local pause = 0

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body file " .. tostring(args[1]))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] and args[2] ~= "" then
    wrk.headers["Authorization"] = args[2]
  end
  pause = tonumber(args[3]) or 0
end

function delay()
  return pause
end
