"""Sessions: tests (the whole suite), lint, typecheck, bench, and one per plugin distribution."""

import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]

PLUGIN_DISTS = {
    "wandb": "./plugins-wandb",
    "aim": "./plugins-aim",
    "openinference": "./plugins-openinference",
}
TEST_DISTS = ["./tests/plugin_dists/callbacks-example", "./tests/plugin_dists/callbacks-broken"]
PEERS = ["llama-index-core", "langchain-core", "opentelemetry-sdk", "psutil"]


def _install_everything(session: nox.Session) -> None:
    session.install(
        "-e",
        ".[test,llama-index,langchain,openai,anthropic]",
        *PLUGIN_DISTS.values(),
        *TEST_DISTS,
    )


def _install_chromium(session: nox.Session) -> None:
    # The viewer's browser test drives Debian's chromium: Playwright cannot download its own.
    if shutil.which("chromium") is None and shutil.which("apt-get") is not None:
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "chromium", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite: host, built-in plugins, every plugin distribution, end to end
    (installs Debian's chromium for the browser test when it is missing)."""
    _install_chromium(session)
    _install_everything(session)
    session.install("psutil")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the host package."""
    session.install("mypy", "-e", ".")
    session.run("mypy", "core/callbacks")


@nox.session
def bench(session: nox.Session) -> None:
    """Overhead benchmark against LlamaIndex, LangChain and the OpenTelemetry SDK."""
    session.install(".", *PLUGIN_DISTS.values(), *PEERS)
    session.run(
        "python", "-m", "benchmarks.run", "--out", "benchmarks/RESULTS.md", *session.posargs
    )


E2E_PEERS = [
    "llama-index-core",
    "psutil",
    "llama-index-callbacks-wandb",
    "llama-index-callbacks-aim",
    "setuptools<81",  # llama-index-callbacks-aim imports pkg_resources
    "openinference-instrumentation-llama-index",
    "opentelemetry-exporter-otlp-proto-http",
]


@nox.session(name="bench-e2e")
def bench_e2e(session: nox.Session) -> None:
    """End-to-end benchmark: a real LlamaIndex app with the sinks on, against untraced and
    against LlamaIndex's own handlers; then the events/s each sink sustains before it drops.
    Arguments go to the first (``nox -s bench-e2e -- --rounds 1``)."""
    session.install(".", *PLUGIN_DISTS.values(), *E2E_PEERS)
    session.run("python", "-m", "benchmarks.e2e", "--out", "benchmarks/E2E.md", *session.posargs)
    session.run("python", "-m", "benchmarks.e2e_capacity", "--out", "benchmarks/E2E.md")


def _plugin_session(name: str, path: str) -> None:
    @nox.session(name=name)
    def run(session: nox.Session) -> None:
        session.install("-e", ".[test]", path)
        session.run("pytest", f"{path}/tests", *session.posargs)

    run.__doc__ = f"Tests of callbacks-{name} alone, against the host."


for _name, _path in PLUGIN_DISTS.items():
    _plugin_session(_name, _path)
