"""IPC authorization as the nucleus enforces it for ``aws.greengrass.ipc.mqttproxy`` (PublishToIoTCore).

Follows the nucleus source (github.com/aws-greengrass/aws-greengrass-nucleus, ``src/main/java/com/aws/greengrass``):

- ``authorization/AuthorizationPolicyParser.java``: each component's ``configuration/accessControl`` maps an IPC
  service to policies ``{policyId: {operations, resources}}``; the principal is the component that declares it.
- ``authorization/AuthorizationHandler.java``: an operation not registered for the service (PublishToIoTCore,
  SubscribeToIoTCore, ``*``) is refused; a request is allowed when a permission exists for
  (principal | ``*``, operation | ``*``, resource); a resource with ``?`` is invalid and skipped
  (``AuthorizationModule.validateResource``: use the escape ``${?}``).
- ``authorization/WildcardTrie.java`` with ``ResourceLookupPolicy.MQTT_STYLE`` (``MqttProxyIPCAgent`` asks for
  it, nucleus >= 2.6.0): ``*`` matches any characters, ``/``-separated ``+`` one level, a trailing ``/#`` the rest
  (``a/#`` also matches ``a``); ``${*}``, ``${$}``, ``${?}`` are literal characters; other ``+``/``#`` are literal.
- ``builtin/services/mqttproxy/MqttProxyIPCAgent.java``: a refused request gets ``UnauthorizedError`` with the
  message ``Not Authorized`` (what the awsiotsdk client raises).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
REGISTERED_OPERATIONS = {
    MQTT_PROXY: {"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore", "*"},
}
UNAUTHORIZED_ERROR = "Not Authorized"


def resource_pattern(resource: str) -> re.Pattern[str]:
    """The WildcardTrie MQTT_STYLE match of one allowed resource, as a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(resource):
        char = resource[i]
        if resource.startswith("${", i) and len(resource) > i + 3 and resource[i + 3] == "}":
            out.append(re.escape(resource[i + 2]))
            i += 4
            continue
        at_level_start = i == 0 or resource[i - 1] == "/"
        at_level_end = i == len(resource) - 1 or resource[i + 1] == "/"
        if char == "*":
            out.append(".*")
        elif char == "+" and at_level_start and at_level_end:
            out.append("[^/]*")
        elif char == "#" and i == len(resource) - 1 and i > 0 and resource[i - 1] == "/":
            out[-1] = "(?:/.*)?"  # replaces the escaped "/": "a/#" matches "a", "a/" and "a/b/c"
        else:
            out.append(re.escape(char))
        i += 1
    if resource == "#":
        return re.compile(".*", re.S)
    return re.compile("".join(out), re.S)


@dataclass
class Authorizer:
    """Permissions loaded from the components' (resolved) configurations."""

    permissions: dict[tuple[str, str, str], list[re.Pattern[str]]] = field(default_factory=dict)
    """(service, principal, operation) → allowed resource patterns."""
    skipped: list[str] = field(default_factory=list)

    def load(self, component: str, configuration: dict[str, Any]) -> None:
        """``AuthorizationHandler.loadAuthorizationPolicies`` for one component (replaces its old ones)."""
        self.permissions = {k: v for k, v in self.permissions.items() if k[1] != component}
        acl = configuration.get("accessControl") or {}
        for service, policies in acl.items() if isinstance(acl, dict) else ():
            if service not in REGISTERED_OPERATIONS or not isinstance(policies, dict):
                self.skipped.append(f"{service}: service not registered")
                continue
            for policy_id, policy in policies.items():
                operations = policy.get("operations") if isinstance(policy, dict) else None
                if not operations:
                    self.skipped.append(f"{policy_id}: Policy operations are missing or invalid")
                    continue
                for operation in operations:
                    for resource in policy.get("resources") or []:
                        if "?" in str(resource).replace("${?}", ""):
                            self.skipped.append(f"{policy_id}: Resource contains invalid character: '?'")
                            continue
                        key = (service, component, operation)
                        self.permissions.setdefault(key, []).append(resource_pattern(str(resource)))

    def is_authorized(self, service: str, principal: str, operation: str, resource: str) -> bool:
        if operation not in REGISTERED_OPERATIONS.get(service, set()):
            return False
        for who in (principal, "*"):
            for what in (operation, "*"):
                if any(p.fullmatch(resource) for p in self.permissions.get((service, who, what), [])):
                    return True
        return False
