-- Argo CD health check for dr.lifeline.io/Restore (docs/gitops.md).
-- Suspended: waiting for two approvers; Progressing: approved or running; Healthy: restored;
-- Degraded: failed, rejected, or an invalid spec.
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
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status, hs.message = "Degraded", stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
local phase, text = obj.status.phase, obj.status.message
if phase == "PendingApproval" then
  local n = #(obj.status.approvals or {})
  hs.status, hs.message = "Suspended", "waiting for approval (" .. tostring(n) .. " of 2)"
elseif phase == "Approved" or phase == "Running" then
  hs.message = text or ("restore " .. phase)
elseif phase == "Succeeded" then
  hs.status, hs.message = "Healthy", text or "restored"
elseif phase == "Failed" or phase == "Rejected" then
  hs.status, hs.message = "Degraded", phase .. ": " .. (text or obj.status.reason or "")
end
return hs
