-- Argo CD health check for dr.lifeline.io/RestoreDrill (docs/gitops.md).
-- Healthy: the last drill passed within its RTO (or none has run yet); Progressing: a drill
-- runs or the spec is not reconciled yet; Degraded: an invalid spec, a failed drill or a
-- missed RTO; Suspended: spec.suspend.
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
local stalled, reconciling, ready = condition("Stalled"), condition("Reconciling"), condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status, hs.message = "Degraded", stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready == nil or ready.status ~= "True" or (reconciling ~= nil and reconciling.status == "True") then
  if ready ~= nil and ready.message ~= nil then hs.message = ready.message end
  return hs
end
local run = obj.status.lastRun
if run ~= nil and run.outcome == "Running" then
  hs.message = "a drill is running"
  return hs
end
if run ~= nil and run.outcome == "Failed" then
  hs.status, hs.message = "Degraded", "the last drill failed: " .. (run.message or run.reason or "see kubectl describe")
  return hs
end
if run ~= nil and run.rtoMet == false then
  hs.status = "Degraded"
  hs.message = "the last drill took " .. tostring(run.totalSeconds) .. " s, over the RTO of " .. tostring(run.rtoSeconds) .. " s"
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status, hs.message = "Suspended", "spec.suspend is true: no drill starts"
  return hs
end
hs.status = "Healthy"
hs.message = run ~= nil and "the last drill passed" or "no drill has run yet"
return hs
