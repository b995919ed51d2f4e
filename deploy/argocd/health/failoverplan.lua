-- Argo CD health check for dr.lifeline.io/FailoverPlan (docs/gitops.md).
-- Healthy: monitoring, or failed over and serving from the standby; Degraded: the active site
-- fails its checks, or Stalled (an invalid spec, sites a person must fix); Progressing: a
-- switchover runs (Ready Unknown), a cluster does not answer, or the spec is not reconciled
-- yet; Suspended: a failover waits for a person (manual mode, cap reached).
local hs = {status = "Progressing", message = "waiting for the Lifeline operator"}
local function condition(t)
  for _, c in ipairs((obj.status or {}).conditions or {}) do
    if c.type == t then return c end
  end
  return nil
end
if obj.status == nil then return hs end
local generation = (obj.metadata or {}).generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "generation " .. tostring(generation) .. " not observed yet"
  return hs
end
local stalled, ready = condition("Stalled"), condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status, hs.message = "Degraded", stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
local recommended = condition("FailoverRecommended")
if recommended ~= nil and recommended.status == "True" then
  hs.status, hs.message = "Suspended", recommended.reason .. ": " .. (recommended.message or "")
  return hs
end
local phase, active = obj.status.phase, obj.status.activeSite or "?"
if phase == "Degraded" then
  hs.status, hs.message = "Degraded", "the active site " .. active .. " fails its health checks"
  return hs
end
if ready == nil or ready.status ~= "True" then
  if ready ~= nil and ready.message ~= nil then hs.message = ready.message end
  return hs
end
if phase == "FailingOver" or phase == "FailingBack" then
  hs.message = phase .. ": switching traffic away from " .. active
elseif phase == "Monitoring" or phase == "FailedOver" then
  hs.status, hs.message = "Healthy", phase .. ": serving from " .. active
end
return hs
