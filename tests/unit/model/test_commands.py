from __future__ import annotations

from typing import Literal

import pytest

from reactor import CommandError, Field, Session, VideoModel, command


class Kinds(VideoModel):
    @command
    def number(self, x: float = Field(1.0, ge=0.0, le=4.0)) -> float:
        """A bounded number."""
        return x

    @command
    def integer(self, n: int = Field(3, ge=1, le=10)) -> int:
        return n

    @command
    def choice(self, mode: Literal["a", "b"] = "a") -> str:
        return mode

    @command
    def text(self, s: str = Field("hi", min_length=1, max_length=5)) -> str:
        return s

    @command
    def toggle(self, on: bool = False) -> bool:
        return on

    @command
    def many(self, xs: list[int] = Field(default_factory=list, max_length=3)) -> list[int]:
        return xs

    @command
    def maybe(self, v: float | None = None) -> float | None:
        return v

    @command
    def required(self, name: str) -> str:
        return name

    def start_session(self, session: Session) -> None:
        pass


def test_commands_are_collected() -> None:
    assert set(Kinds.commands) == {
        "number", "integer", "choice", "text", "toggle", "many", "maybe", "required"
    }


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("number", {"x": 2.5}, {"x": 2.5}),
        ("number", {}, {"x": 1.0}),
        ("integer", {"n": 10}, {"n": 10}),
        ("choice", {"mode": "b"}, {"mode": "b"}),
        ("text", {"s": "abc"}, {"s": "abc"}),
        ("toggle", {"on": True}, {"on": True}),
        ("many", {"xs": [1, 2]}, {"xs": [1, 2]}),
        ("maybe", {"v": None}, {"v": None}),
        ("maybe", {"v": 1.5}, {"v": 1.5}),
        ("required", {"name": "x"}, {"name": "x"}),
    ],
)
def test_valid_payloads(name: str, args: dict, expected: dict) -> None:
    assert Kinds.validate_command(name, args) == expected


@pytest.mark.parametrize(
    ("name", "args", "field", "rule"),
    [
        ("number", {"x": 5}, "x", "less than or equal to 4"),
        ("number", {"x": -1}, "x", "greater than or equal to 0"),
        ("number", {"x": "fast"}, "x", "valid number"),
        ("integer", {"n": 0}, "n", "greater than or equal to 1"),
        ("integer", {"n": 2.5}, "n", "valid integer"),
        ("choice", {"mode": "c"}, "mode", "'a' or 'b'"),
        ("text", {"s": ""}, "s", "at least 1 character"),
        ("text", {"s": "toolong"}, "s", "at most 5 characters"),
        ("toggle", {"on": "perhaps"}, "on", "valid boolean"),
        ("toggle", {"on": 0}, "on", "valid boolean"),  # strict: no coercion of 0
        ("number", {"x": False}, "x", "valid number"),
        ("number", {"x": "2"}, "x", "valid number"),
        ("many", {"xs": [1, 2, 3, 4]}, "xs", "at most 3 items"),
        ("many", {"xs": ["a"]}, "xs.0", "valid integer"),
        ("required", {}, "name", "required argument is missing"),
        ("number", {"y": 1}, "y", "unknown argument"),
    ],
)
def test_invalid_payloads_name_field_and_rule(name: str, args: dict, field: str, rule: str) -> None:
    with pytest.raises(CommandError) as err:
        Kinds.validate_command(name, args)
    assert err.value.field == field
    assert err.value.status == 422
    assert rule in str(err.value) and name in str(err.value)


def test_unknown_command_is_404_and_lists_commands() -> None:
    with pytest.raises(CommandError) as err:
        Kinds.validate_command("nope", {})
    assert err.value.status == 404 and "number" in str(err.value)


def test_arguments_must_be_an_object() -> None:
    with pytest.raises(CommandError, match="JSON object"):
        Kinds.validate_command("number", [1])  # type: ignore[arg-type]


def test_schema_has_name_description_constraints_defaults() -> None:
    schema = Kinds.schema(64, 48, 30)
    assert schema["model"] == "Kinds"
    assert schema["video"] == {"width": 64, "height": 48, "fps": 30}
    by_name = {c["name"]: c for c in schema["commands"]}
    number = by_name["number"]
    assert number["description"] == "A bounded number."
    assert number["parameters"]["properties"]["x"] == {
        "default": 1.0, "maximum": 4.0, "minimum": 0.0, "type": "number"
    }
    assert number["parameters"]["additionalProperties"] is False
    assert by_name["choice"]["parameters"]["properties"]["mode"]["enum"] == ["a", "b"]
    assert by_name["text"]["parameters"]["properties"]["s"]["maxLength"] == 5
    assert by_name["required"]["parameters"]["required"] == ["name"]


def test_unannotated_parameter_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="needs a type annotation"):

        class Bad(VideoModel):
            @command
            def oops(self, x=1):
                pass


# -- @command("name", description=...): the seed's form ------------------------------------------


class Named(VideoModel):
    @command("set-speed", description="How fast the bars move.")
    def speed_handler(self, speed: float = Field(1.0, ge=0.0, le=8.0)) -> float:
        """This docstring is replaced by the description."""
        return speed

    @command(description="Described, keeps its method name.")
    def reset(self) -> str:
        """Also replaced."""
        return "reset"

    @command()
    def called_empty(self, on: bool = False) -> bool:
        """From the docstring."""
        return on

    @command("renamed_only")
    def only_name(self, n: int = 1) -> int:
        """Docstring kept when only the name is given."""
        return n

    @command
    def bare(self, n: int = 1) -> int:
        """From the docstring."""
        return n

    def start_session(self, session: Session) -> None:
        pass


def test_called_forms_name_the_command_and_describe_it() -> None:
    assert set(Named.commands) == {"set-speed", "reset", "called_empty", "renamed_only", "bare"}
    by_name = {c["name"]: c for c in Named.schema(64, 48, 30)["commands"]}
    assert by_name["set-speed"]["description"] == "How fast the bars move."
    assert by_name["reset"]["description"] == "Described, keeps its method name."
    assert by_name["called_empty"]["description"] == "From the docstring."
    assert by_name["renamed_only"]["description"] == "Docstring kept when only the name is given."
    assert "speed_handler" not in by_name and "only_name" not in by_name


def test_called_and_bare_forms_have_the_same_schema_shape() -> None:
    class Bare(VideoModel):
        @command
        def go(self, speed: float = Field(1.0, ge=0.0, le=8.0)) -> float:
            """How fast the bars move."""
            return speed

        def start_session(self, session: Session) -> None:
            pass

    class Called(VideoModel):
        @command("go", description="How fast the bars move.")
        def anything(self, speed: float = Field(1.0, ge=0.0, le=8.0)) -> float:
            return speed

        def start_session(self, session: Session) -> None:
            pass

    assert Bare.schema(64, 48, 30)["commands"] == Called.schema(64, 48, 30)["commands"]


def test_a_renamed_command_validates_and_runs_under_its_new_name() -> None:
    from reactor.testing import ModelRunner

    assert Named.validate_command("set-speed", {"speed": 2.0}) == {"speed": 2.0}
    with pytest.raises(CommandError, match=r"set-speed: speed: .*less than or equal to 8") as err:
        Named.validate_command("set-speed", {"speed": 9})
    assert err.value.field == "speed"
    with pytest.raises(CommandError) as err:
        Named.validate_command("speed_handler", {})
    assert err.value.status == 404 and "set-speed" in str(err.value)
    runner = ModelRunner(Named, width=64, height=48)
    runner.send_command("set-speed", speed=3.5)
    runner.send_command("reset")
    runner.apply_pending()
    assert runner.results == [("set-speed", 3.5), ("reset", "reset")]


def test_a_bad_command_name_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="'1st' is not a usable command name"):
        command("1st")
    with pytest.raises(TypeError, match="'has space' is not a usable command name"):
        command("has space")


def test_two_methods_with_one_command_name_are_refused_naming_both() -> None:
    with pytest.raises(TypeError, match="methods 'a' and 'b' are both named 'go'"):

        class Clash(VideoModel):
            @command("go")
            def a(self) -> None:
                pass

            @command("go")
            def b(self) -> None:
                pass


def test_a_subclass_overrides_a_renamed_command_by_method_name() -> None:
    class Base(VideoModel):
        @command("go", description="base")
        def handler(self) -> str:
            return "base"

        def start_session(self, session: Session) -> None:
            pass

    class Child(Base):
        @command("go", description="child")
        def handler(self) -> str:
            return "child"

    class Plain(Base):
        def handler(self) -> str:  # no longer a command
            return "plain"

    assert Child.commands["go"].description == "child"
    assert Child.commands["go"].handler(Child()) == "child"
    assert "go" not in Plain.commands


def test_a_misspelt_command_or_argument_gets_the_closest_name() -> None:
    from reactor.examples.filters import Brightness

    with pytest.raises(CommandError) as unknown:
        Brightness.validate_command("set_gian", {"gain": 2})
    assert str(unknown.value).endswith(
        "(commands: set_gain, set_invert, set_mode) (did you mean 'set_gain'?)")
    with pytest.raises(CommandError) as argument:
        Brightness.validate_command("set_gain", {"gian": 2})
    assert str(argument.value) == ("set_gain: gian: unknown argument (it takes gain) "
                                   "(did you mean 'gain'?)")
