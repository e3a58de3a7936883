"""The Helm chart, linted and rendered by real Helm code (helm-python-sdk embeds Helm 4),
every manifest validated against the Kubernetes schemas (kubernetes-validate), and the
gateway's rendered configuration checked by `sluice check`."""

import base64
import os
import subprocess
import tempfile

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "sluice")
KUBE_VERSION = "1.30.0"
NAMESPACE = "sluice-system"
# Custom resources have no schema in kubernetes-validate.
CUSTOM = {"ServiceMonitor", "Certificate"}


def render(values):
    rendered = helm.Chart.load(CHART).render(values, name="sluice", namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in rendered.items():
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] not in CUSTOM:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    return docs


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found


def test_lint_has_no_errors():
    report = helm.lint(CHART, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


def test_defaults_expose_the_tutorials_nodeport_with_a_locked_down_gateway():
    docs = render({})
    service = find(docs, "Service", "sluice")[0]
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30200
    deployment = find(docs, "Deployment", "sluice")[0]
    assert deployment["spec"]["replicas"] == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["gateway", "--config"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"], "no PDB for one replica"
    assert not [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]


def test_rbac_is_minimal_and_namespaced_by_default():
    docs = render({})
    role = find(docs, "Role", "sluice")[0]
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = {(r["apiGroups"][0], r["resources"][0]): sorted(r["verbs"]) for r in role["rules"]}
    assert rules == {
        ("apps", "deployments/scale"): ["get", "update"],
        ("discovery.k8s.io", "endpointslices"): ["list", "watch"],
        ("serving.kserve.io", "inferenceservices"): ["list", "watch"],
    }
    assert not [d for d in docs if d["kind"] == "ClusterRole"]

    docs = render({"rbac": {"namespaces": ["kserve-inference", "team-b"]}})
    assert sorted(r["metadata"]["namespace"] for r in find(docs, "Role", "sluice")) == ["kserve-inference", "team-b"]
    assert len(find(docs, "RoleBinding", "sluice")) == 2
    # InferenceServices are watched only where the Roles allow it.
    config = yaml.safe_load(find(docs, "ConfigMap")[0]["data"]["sluice.yaml"])
    assert config["kubernetes"]["inferenceServices"]["namespaces"] == ["kserve-inference", "team-b"]


def test_gateways_elect_a_leader_with_a_lease_in_their_own_namespace():
    docs = render({"replicaCount": 3, "rbac": {"namespaces": ["kserve-inference"]}})
    config = yaml.safe_load(find(docs, "ConfigMap")[0]["data"]["sluice.yaml"])
    election = config["kubernetes"]["leaderElection"]
    assert election == {"enabled": True, "leaseName": "sluice-autoscaler", "leaseNamespace": NAMESPACE}
    role = find(docs, "Role", "sluice-leader-election")[0]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    }]
    binding = find(docs, "RoleBinding", "sluice-leader-election")[0]
    assert binding["subjects"][0]["name"] == "sluice"
    env = find(docs, "Deployment", "sluice")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env

    # On for one replica too: a rolling update runs the old and the new side by side.
    one = yaml.safe_load(find(render({}), "ConfigMap")[0]["data"]["sluice.yaml"])
    assert one["kubernetes"]["leaderElection"]["enabled"] is True
    off = render({"leaderElection": {"enabled": False}})
    config = yaml.safe_load(find(off, "ConfigMap")[0]["data"]["sluice.yaml"])
    assert config["kubernetes"]["leaderElection"]["enabled"] is False
    assert not [d for d in off if d["metadata"]["name"].endswith("leader-election")], "no lease, no Role for it"


def test_kubernetes_settings_belong_in_the_charts_values():
    with pytest.raises(Exception, match="not config.kubernetes"):
        render({"config": {"kubernetes": {"leaderElection": {"enabled": True}}}})


def test_cluster_wide_rbac():
    docs = render({"rbac": {"clusterWide": True}, "inferenceServices": {"enabled": True}})
    find(docs, "ClusterRole")
    binding = find(docs, "ClusterRoleBinding")[0]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    # Only the lease's Role stays namespaced.
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == ["sluice-leader-election"]
    config = yaml.safe_load(find(docs, "ConfigMap")[0]["data"]["sluice.yaml"])
    assert config["kubernetes"]["inferenceServices"]["enabled"] is True
    assert config["kubernetes"]["inferenceServices"]["namespaces"] == [], "every namespace"


def test_multi_replica_gets_a_disruption_budget_and_a_service_monitor_when_asked():
    docs = render({"replicaCount": 3, "metrics": {"serviceMonitor": {"enabled": True}}})
    assert find(docs, "Deployment", "sluice")[0]["spec"]["replicas"] == 3
    assert find(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    monitor = find(docs, "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["port"] == "admin"


def test_the_rendered_configuration_passes_sluice_check():
    services = [{
        "name": "redwine-week4",
        "namespace": "kserve-inference",
        "minReplicas": 1,
        "maxReplicas": 8,
        "backend": {"static": ["10.0.0.7:8012"]},
    }]
    services.append({
        "name": "iris",
        "namespace": "kserve-inference",
        "backend": {"kubernetes": {"deployment": "iris-predictor", "port": 8080}},
    })
    docs = render({"replicaCount": 2, "config": {"domain": "example.com", "services": services}})
    config = find(docs, "ConfigMap")[0]["data"]["sluice.yaml"]
    sluice = os.path.join(ROOT, "target", "debug", "sluice")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(config)
        f.flush()
        checked = subprocess.run([sluice, "check", "--config", f.name], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "ok (2 services)" in checked.stdout


def test_the_webhook_with_a_user_certificate():
    cert = "-----BEGIN CERTIFICATE-----\nMIIBuser\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n"
    ca = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n"
    docs = render({"webhook": {"enabled": True, "tls": {"certificate": cert, "key": key, "caBundle": ca}}})
    secret = find(docs, "Secret")[0]
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == cert
    config = find(docs, "MutatingWebhookConfiguration")[0]
    hook = config["webhooks"][0]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == ca
    assert hook["clientConfig"]["service"]["name"] == "sluice-webhook"
    assert hook["failurePolicy"] == "Fail"
    assert hook["rules"] == [{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
        "resources": ["pods"], "scope": "Namespaced",
    }]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and excluded["values"] == [NAMESPACE]
    assert hook["objectSelector"]["matchLabels"] == {"sluice.dev/inject": "true"}
    webhook = find(docs, "Deployment", "sluice-webhook")[0]["spec"]["template"]["spec"]["containers"][0]
    assert webhook["args"][0] == "webhook"
    assert "--tls-cert=/etc/sluice/tls/tls.crt" in webhook["args"]


def test_the_webhook_with_a_generated_certificate_or_cert_manager():
    docs = render({"webhook": {"enabled": True}})
    secret = find(docs, "Secret")[0]
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert find(docs, "MutatingWebhookConfiguration")[0]["webhooks"][0]["clientConfig"]["caBundle"]

    docs = render({"webhook": {"enabled": True, "tls": {"certManager": {"enabled": True, "issuer": "ca-issuer"}}}})
    certificate = find(docs, "Certificate")[0]
    assert certificate["spec"]["dnsNames"] == ["sluice-webhook.sluice-system.svc"]
    config = find(docs, "MutatingWebhookConfiguration")[0]
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "sluice-system/sluice-webhook"
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_tls_on_the_gateway_from_an_existing_secret():
    docs = render({"tls": {"enabled": True, "secretName": "gateway-tls"}})
    spec = find(docs, "Deployment", "sluice")[0]["spec"]["template"]["spec"]
    volume = [v for v in spec["volumes"] if v["name"] == "tls"][0]
    assert volume["secret"]["secretName"] == "gateway-tls"
    mount = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "tls"][0]
    assert mount["readOnly"] is True
    config = yaml.safe_load(find(docs, "ConfigMap")[0]["data"]["sluice.yaml"])
    assert config["tls"]["certFile"] == mount["mountPath"] + "/tls.crt"
    assert config["tls"]["keyFile"] == mount["mountPath"] + "/tls.key"
    # The chart installs no Secret of its own for the gateway: it is the user's.
    assert not [d for d in docs if d["kind"] == "Secret"]

    # The rendered file passes `sluice check` once the Secret's files are there.
    key = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-subj", "/CN=sluice.example.com", "-days", "1",
                          "-keyout", "/dev/stdout", "-out", "/dev/stdout"],
                         capture_output=True, text=True)
    assert key.returncode == 0, key.stderr
    sluice = os.path.join(ROOT, "target", "debug", "sluice")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tls.crt", "tls.key"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(key.stdout)
        config["tls"]["certFile"] = os.path.join(tmp, "tls.crt")
        config["tls"]["keyFile"] = os.path.join(tmp, "tls.key")
        path = os.path.join(tmp, "sluice.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        checked = subprocess.run([sluice, "check", "--config", path], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        os.remove(os.path.join(tmp, "tls.crt"))
        checked = subprocess.run([sluice, "check", "--config", path], capture_output=True, text=True)
        assert checked.returncode == 64 and "tls.certFile" in checked.stderr, checked.stderr

    assert "tls" not in yaml.safe_load(find(render({}), "ConfigMap")[0]["data"]["sluice.yaml"])
    with pytest.raises(Exception, match="tls.secretName is required"):
        render({"tls": {"enabled": True}})
    with pytest.raises(Exception, match="not config.tls"):
        render({"config": {"tls": {"certFile": "/x", "keyFile": "/y"}}})
