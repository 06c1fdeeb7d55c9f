"""A small third-party plugin: counts LLM events, with settings including a secret."""

from pydantic import BaseModel, ConfigDict, SecretStr

from callbacks import hookimpl


class ExampleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    greeting: str = "hello"
    limit: int = 10
    api_key: SecretStr | None = None


class ExamplePlugin:
    callbacks_name = "example"
    callbacks_delivery = "inline"

    def __init__(self) -> None:
        self.settings: ExampleSettings | None = None
        self.llm_starts = 0

    @hookimpl
    def callbacks_settings(self) -> type[ExampleSettings]:
        return ExampleSettings

    @hookimpl
    def callbacks_configure(self, settings: ExampleSettings) -> None:
        self.settings = settings

    @hookimpl
    def on_llm_start(self, event) -> None:
        self.llm_starts += 1

    @hookimpl
    def callbacks_commands(self, commands) -> None:
        greet = commands.add_parser(
            "example-greet", help="print a greeting (from callbacks-example)"
        )
        greet.add_argument("name")
        greet.set_defaults(run=lambda args, out: out.write(f"hello, {args.name}\n") and 0)
