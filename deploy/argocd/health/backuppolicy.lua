-- Argo CD health check for dr.lifeline.io/BackupPolicy (docs/gitops.md).
-- Healthy: scheduled and protecting; Suspended: spec.suspend; Degraded: an invalid spec or
-- data at risk now (source, destinations, keys, RPO); Progressing: not reconciled yet.
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
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status, hs.message = "Suspended", "spec.suspend is true: no new backups start"
  return hs
end
for _, t in ipairs({"SourceAvailable", "DestinationsReachable", "KeysAvailable", "RPOMet"}) do
  local c = condition(t)
  if c ~= nil and c.status == "False" then
    hs.status, hs.message = "Degraded", t .. " (" .. (c.reason or "") .. "): " .. (c.message or "")
    return hs
  end
end
hs.status, hs.message = "Healthy", ready.message or "Ready"
return hs
