-- wrk script: POST the JSON document in the file named after `--` to the URL's path, with
-- an optional Authorization header value as the second argument ("" for none) and an
-- optional pause in milliseconds as the third: each connection then waits that long
-- after each answer, for a steady rate below the peak (about connections * 1000 / pause
-- requests a second while answers take much less than the pause).
--   wrk -s benchmarks/predictor/post.lua http://127.0.0.1:PORT/predict -- body.json ["Bearer KEY" [25]]
-- init runs in every wrk thread before wrk formats that thread's request; wrk looks for a
-- `delay` function after init, so the unpaced run has none (no timer per request).

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body file " .. tostring(args[1]))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] and args[2] ~= "" then
    wrk.headers["Authorization"] = args[2]
  end
  local pause = tonumber(args[3])
  if pause then
    delay = function() return pause end
  end
end
