-- wrk script: POST one week's five features to /api/predict (the body of the original API).
wrk.method = "POST"
wrk.path = "/api/predict"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"acft": 249, "sum_daily_hours": 2539.5, "Cycles": 1591, "sum_uti_mensal": 11261.3, "age_fleet": 8037205.9}'

-- Print the count of non-2xx/3xx answers so a run full of errors cannot pass for a fast one.
done = function(summary, latency, requests)
  io.write(string.format("non_2xx: %d\n", summary.errors.status))
end
