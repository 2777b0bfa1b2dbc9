-- wrk script: POST the JSON document in the file named after `--` to the URL's path, with
-- an optional Authorization header value as the second argument.
--   wrk -s benchmarks/predictor/post.lua http://127.0.0.1:PORT/predict -- body.json ["Bearer KEY"]
-- init runs in every wrk thread before wrk formats that thread's request.

function init(args)
  local file = assert(io.open(args[1], "rb"), "cannot open the body file " .. tostring(args[1]))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] then
    wrk.headers["Authorization"] = args[2]
  end
end
