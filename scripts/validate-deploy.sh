#!/usr/bin/env bash
# Validates every manifest under deploy/ against the Kubernetes 1.34 schemas, strictly
# (an unknown field, or a kind without a schema, fails): kubernetes-validate from PyPI,
# installed into a venv under target/ when missing. NetworkAttachmentDefinitions (a CRD: no
# schema ships with Kubernetes) are checked against the CRD's schema in deploy/crds/
# (unknown fields refused too), and their spec.config must be a CNI config of type
# vfpool-cni.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.34.0
VENV=target/kvalidate-venv
# (1.37.0 carries the schemas of Kubernetes 1.25 to 1.37; python3 -m venv needs Debian's
# python3-venv.)
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet 'kubernetes-validate==1.37.0'
fi

mapfile -t files < <(find deploy -name '*.yaml' | sort)
[ "${#files[@]}" -gt 0 ] || { echo "validate-deploy: no manifests under deploy/" >&2; exit 1; }

"$VENV/bin/python" - "$K8S_VERSION" "${files[@]}" <<'PY'
import json, sys
import jsonschema, yaml
import kubernetes_validate as kv
from kubernetes_validate.utils import SchemaNotFoundError

version, files = sys.argv[1], sys.argv[2:]
crd_path = "deploy/crds/network-attachment-definition.yaml"
nad = ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")


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

failed = checked = 0
for path in files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        print(f"ERROR {path}: no manifest in it")
        failed += 1
    for d in docs:
        name = f"{path}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        try:
            if (d.get("apiVersion"), d.get("kind")) == nad:
                jsonschema.validate(d, nad_schema)
                conf = json.loads(d["spec"]["config"])
                if conf.get("type") != "vfpool-cni":
                    raise ValueError(f"spec.config type is {conf.get('type')!r}, not 'vfpool-cni'")
                if not conf.get("cniVersion") or not conf.get("name"):
                    raise ValueError("spec.config needs cniVersion and name")
            else:
                # Strict: an unknown field fails; a kind without a 1.34 schema fails too.
                kv.validate(d, version, strict=True)
            checked += 1
        except (jsonschema.ValidationError, SchemaNotFoundError, ValueError, KeyError) as e:
            print(f"ERROR {name}: {getattr(e, 'message', None) or e}")
            failed += 1
if failed:
    sys.exit(1)
print(f"validate-deploy: {checked} manifests in {len(files)} files valid against Kubernetes "
      f"{version} (NetworkAttachmentDefinitions against {crd_path})")
PY
