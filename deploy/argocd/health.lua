-- Argo CD health check for modeldeploy.dev/ModelDeployment (argocd-cm key:
-- resource.customizations.health.modeldeploy.dev_ModelDeployment). Tested by tests/gitops.
local hs = {}

local function condition(ctype)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition("Ready")
local reconciling = condition("Reconciling")
local stalled = condition("Stalled")
local phase = nil
if obj.status.rollout ~= nil then
  phase = obj.status.rollout.phase
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

if phase == "Degraded" or phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = text(obj.status.rollout, text(ready, "Rollout " .. phase))
  return hs
end

if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = text(obj.status.rollout, "Rollout paused")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text(reconciling, "Reconciling")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
