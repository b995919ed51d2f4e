-- Argo CD health check for dr.lifeline.io/RecoveryPoint (docs/gitops.md).
-- Healthy: Available; Degraded: Damaged or an invalid record; Suspended: Pruned or Shredded
-- (kept as a record, no longer restorable); Progressing: not reconciled yet.
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
local phase = obj.status.phase
if phase == "Damaged" then
  hs.status, hs.message = "Degraded", "verification found damage: restore from another point"
elseif phase == "Pruned" or phase == "Shredded" then
  hs.status, hs.message = "Suspended", "recovery point " .. phase .. ": kept as a record, not restorable"
elseif ready ~= nil and ready.status == "True" then
  hs.status, hs.message = "Healthy", "recovery point " .. (phase or "recorded")
elseif ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
end
return hs
