#!/usr/bin/env bash
# Validates every manifest under deploy/ against the Kubernetes 1.34 schemas, strictly
# (an unknown field fails): kubernetes-validate from PyPI, installed into a venv under
# target/ when missing. NetworkAttachmentDefinitions (a CRD: no schema ships with
# Kubernetes) are checked against the CRD's schema in deploy/crds/ (unknown fields refused
# too), and their spec.config must be a CNI config of type vfpool-cni.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.34.0
VENV=target/kvalidate-venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet kubernetes-validate
fi

mapfile -t files < <(find deploy -name '*.yaml' | sort)
[ "${#files[@]}" -gt 0 ] || { echo "validate-deploy: no manifests under deploy/" >&2; exit 1; }

# Everything Kubernetes has a schema for (the CRD itself included). A kind without a schema
# is only a warning there; the step below fails for any such kind but NetworkAttachmentDefinition.
"$VENV/bin/kubernetes-validate" --quiet --strict -k "$K8S_VERSION" "${files[@]}"

"$VENV/bin/python" - "$K8S_VERSION" "${files[@]}" <<'PY'
import json, sys
import jsonschema, yaml

version, files = sys.argv[1], sys.argv[2:]
crd_path = "deploy/crds/network-attachment-definition.yaml"

def strict(schema):
    """The CRD's schema with unknown fields refused (kubectl --validate=strict)."""
    if schema.get("type") == "object" and "properties" in schema:
        schema = dict(schema, additionalProperties=False)
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
    return schema

with open(crd_path) as f:
    crd = yaml.safe_load(f)
(v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
nad_schema = strict(v1["schema"]["openAPIV3Schema"])

builtin = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "resource.k8s.io/v1",
           "apiextensions.k8s.io/v1")
failed = checked = 0
for path in files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion")
        name = f"{path}: {kind}/{d.get('metadata', {}).get('name')}"
        if api in builtin:
            continue
        if (api, kind) != ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"):
            print(f"ERROR {name}: no schema for {api} {kind}")
            failed += 1
            continue
        try:
            jsonschema.validate(d, nad_schema)
            conf = json.loads(d["spec"]["config"])
            if conf.get("type") != "vfpool-cni":
                raise ValueError(f"spec.config type is {conf.get('type')!r}, not 'vfpool-cni'")
            if not conf.get("cniVersion") or not conf.get("name"):
                raise ValueError("spec.config needs cniVersion and name")
            checked += 1
        except (jsonschema.ValidationError, ValueError, KeyError) as e:
            msg = getattr(e, "message", str(e))
            print(f"ERROR {name}: {msg}")
            failed += 1
if failed:
    sys.exit(1)
print(f"validate-deploy: {len(files)} files valid against Kubernetes {version} "
      f"({checked} NetworkAttachmentDefinition(s) against deploy/crds)")
PY
