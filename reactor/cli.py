"""The ``reactor`` command line.

Every subcommand is a small function taking the parsed arguments and returning an exit
code; errors from reactor are printed as one clear message (no traceback) and exit 1.

Long module: about 540 lines, because it is every subcommand's handler beside the one
parser that names them all; each handler is a few lines that call the package doing the
work (the daemon, the fleet, the monitor), so splitting it would only scatter the parser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reactor.errors import ReactorError

Handler = Callable[[argparse.Namespace], int]


CONFIG_HELP = ("config YAML, or a packaged example by name (reactor init --list); "
               "default: the packaged test pattern")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# --- config, schema, init -------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from reactor.config import load_config
    from reactor.daemon.launcher import check_port_range

    cfg = load_config(args.config)
    check_port_range(cfg)
    model = cfg.model_class()
    loaded = ""
    if args.load:
        timeout = args.timeout if args.timeout is not None else cfg.model.load_timeout_s
        loaded = f", load() took {_try_load(model, cfg.model.args, timeout):.1f} s"
    print(
        f"{args.config}: ok — model {model.name} ({cfg.model.module}), "
        f"{cfg.video.width}x{cfg.video.height}@{cfg.video.fps}, "
        f"{cfg.server.url()}{loaded}"
    )
    return 0


def _try_load(model: type[Any], model_args: dict[str, Any], timeout_s: float) -> float:
    """Build ``model`` and run its ``load(model_args)`` as the daemon would, within
    ``timeout_s``; the seconds it took. Its failure is a ModelLoadError naming it."""
    import threading
    import time

    from reactor.errors import ModelLoadError

    failure: list[BaseException] = []

    def run() -> None:
        try:
            model().load(dict(model_args))
        except BaseException as exc:  # reported below, whatever load() raised
            failure.append(exc)

    started = time.monotonic()
    # A daemon thread: a load() that hangs cannot keep the command from exiting.
    worker = threading.Thread(target=run, name="load", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise ModelLoadError(f"{model.__name__}.load() did not return within {timeout_s:g} s "
                             "(model.load_timeout_s; --timeout to wait longer here)")
    if failure:
        exc = failure[0]
        raise ModelLoadError(f"{model.__name__}.load() raised {type(exc).__name__}: {exc}")
    return time.monotonic() - started


def cmd_schema(args: argparse.Namespace) -> int:
    from reactor.config import load_config

    cfg = load_config(args.config)
    _print_json(cfg.model_class().schema(cfg.video.width, cfg.video.height, cfg.video.fps))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from reactor.scaffold import scaffold

    if args.list:
        return _list_examples()
    if args.name is None:
        raise ReactorError("reactor init needs NAME, the new model's folder (or --list, "
                         "to list the packaged examples)")
    root = scaffold(args.name)
    print(f"created {root}/ with model.py, reactor.yaml, README.md, requirements.txt and "
          "test_model.py")
    print(f"next: reactor schema -c {args.name}/reactor.yaml")
    print(f"      reactor daemon start -c {args.name}/reactor.yaml")
    return 0


def _list_examples() -> int:
    from reactor.config import example_configs

    print("packaged example configs (use by name: reactor run -c NAME; "
          "a file of that name wins):")
    for name, path in example_configs().items():
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        print(f"  {name:<14} {first}")
    return 0


# --- daemon ---------------------------------------------------------------------------


def _run_dir(args: argparse.Namespace) -> Path:
    from reactor.control.rundir import resolve_run_dir

    return resolve_run_dir(getattr(args, "run_dir", None))


def _client(args: argparse.Namespace) -> Any:
    from reactor.control.client import ControlClient

    return ControlClient.connect(_run_dir(args))


def cmd_daemon_start(args: argparse.Namespace) -> int:
    from reactor.config import load_config
    from reactor.daemon.launcher import start_daemon

    cfg = _with_overrides(load_config(args.config), args)
    cfg.model_class()  # fail here, with the import error, rather than in a worker
    return start_daemon(cfg, _run_dir(args), foreground=args.foreground)


def cmd_daemon_stop(args: argparse.Namespace) -> int:
    from reactor.daemon.launcher import stop_daemon

    return stop_daemon(_run_dir(args), timeout=args.timeout)


def cmd_daemon_drain(args: argparse.Namespace) -> int:
    from reactor.daemon.launcher import drain_daemon

    return drain_daemon(_run_dir(args), timeout_s=args.timeout, wait=not args.no_wait)


def cmd_daemon_status(args: argparse.Namespace) -> int:
    from reactor.control.status import snapshot_to_dict

    with _client(args) as client:
        snap = client.status()
    status = snapshot_to_dict(snap)
    if args.json:
        _print_json(status)
    else:
        from reactor.monitor.render import plain_text

        print(f"{status['distribution']} {status['version']}")
        print(plain_text(snap))
    return 0 if status["state"] in ("running", "degraded") else 1


def cmd_daemon_logs(args: argparse.Namespace) -> int:
    from reactor.control.rundir import follow_logs

    return follow_logs(_run_dir(args), args.process, follow=args.follow, lines=args.lines)


def cmd_daemon_restart(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.restart_worker(args.process)
    print(f"restarting {args.process}")
    return 0


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON where it parses, else a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ReactorError(f"send: expected key=value, found {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _string_params(schema: dict[str, Any], command: str) -> set[str]:
    """The parameters of ``command`` whose JSON Schema type is (or may be) a string."""
    for cmd in schema.get("commands", []):
        if cmd.get("name") == command:
            props = cmd.get("parameters", {}).get("properties", {})
            return {
                name for name, p in props.items()
                if p.get("type") == "string"
                or any(o.get("type") == "string" for o in p.get("anyOf", []))
            }
    return set()


def cmd_send(args: argparse.Namespace) -> int:
    payload = parse_assignments(args.args)
    with _client(args) as client:
        # `text=123` means the string "123" when the parameter is a string: values parse
        # as JSON only where the command expects something else.
        for name in _string_params(client.schema(), args.command) & set(payload):
            raw = next(a for a in args.args if a.partition("=")[0] == name).partition("=")[2]
            payload[name] = raw
        result = client.command(args.command, payload)
    print(json.dumps({"command": args.command, "ok": True, "result": result}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from reactor.config import load_config
    from reactor.daemon.headless import run_headless
    from reactor.daemon.launcher import run_foreground

    cfg = _with_overrides(load_config(args.config), args)
    cfg.model_class()
    if args.input or args.output or args.duration is not None:
        return run_headless(
            cfg,
            input_path=args.input,
            output_path=args.output,
            commands_path=args.commands,
            lossless=args.lossless,
            duration_s=args.duration,
            run_dir=_run_dir(args) if args.run_dir else None,
        )
    return run_foreground(cfg, _run_dir(args))


#: Where `reactor token` finds the secret without -c (the config's server.token_secret).
TOKEN_SECRET_ENV = "REACTOR_TOKEN_SECRET"


def cmd_token(args: argparse.Namespace) -> int:
    from reactor.config import load_config
    from reactor.control.tokens import mint, parse_scopes, parse_ttl
    from reactor.errors import ConfigError

    try:
        ttl_s = parse_ttl(args.ttl)
        scopes = parse_scopes(args.scope)
    except ValueError as exc:
        raise ConfigError(f"reactor token: {exc}") from None
    if args.config is not None:
        secret = load_config(args.config).server.token_secret
        if not secret:
            raise ConfigError(f"{args.config}: server.token_secret (or token_secret_file) is "
                              "not set: no token can be minted for it")
    else:
        secret = os.environ.get(TOKEN_SECRET_ENV, "").strip()
        if not secret:
            raise ConfigError(f"reactor token: no secret: pass -c CONFIG (its "
                              f"server.token_secret or token_secret_file) or set "
                              f"{TOKEN_SECRET_ENV}")
        if len(secret) < 32:
            raise ConfigError(f"reactor token: {TOKEN_SECRET_ENV} holds {len(secret)} "
                              "characters; a token secret needs 32 or more")
    print(mint(secret, scopes, ttl_s))
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    if args.fleet:
        from reactor import fleet

        directory = fleet.fleet_dir(args.run_dir)
        if args.json:
            _print_json(fleet.fleet_status(directory))
            return 0
        if args.once:
            from rich.console import Console

            Console().print(fleet.status_table(fleet.fleet_status(directory)))
            return 0
        return fleet.monitor_fleet(directory)
    from reactor.monitor.app import run_monitor

    return run_monitor(_run_dir(args), once=args.once, as_json=args.json)


# --- fleet ----------------------------------------------------------------------------


def cmd_fleet_start(args: argparse.Namespace) -> int:
    from reactor import fleet
    from reactor.config import load_config

    cfg = _with_overrides(load_config(args.config), args)
    directory = fleet.fleet_dir(args.run_dir)
    started = fleet.start_fleet(cfg, args.config or "the packaged test pattern", directory,
                                port=args.port, gpus=args.gpus, count=args.count,
                                public_host=args.public_host)
    print(f"reactor fleet running: {started.url} (HAProxy, pid {started.haproxy_pid})")
    for m in started.members:
        print(f"  daemon {m.index}: {m.public_url}  device {m.device}  run dir {m.run_dir}")
    print("  status: `reactor fleet status`; live: `reactor monitor --fleet`; "
          "stop: `reactor fleet stop`")
    return 0


def cmd_fleet_stop(args: argparse.Namespace) -> int:
    from reactor import fleet

    fleet.stop_fleet(fleet.fleet_dir(args.run_dir), timeout=args.timeout)
    return 0


def cmd_fleet_status(args: argparse.Namespace) -> int:
    from reactor import fleet

    status = fleet.fleet_status(fleet.fleet_dir(args.run_dir))
    if args.json:
        _print_json(status)
    else:
        from rich.console import Console

        Console().print(fleet.status_table(status))
    running = status["balancer"]["running"] and all(
        d["state"] in ("running", "degraded") for d in status["daemons"])
    return 0 if running else 1


# --- parser ---------------------------------------------------------------------------


def _with_overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """The config with ``--host``, ``--port``, ``--log-level`` and ``--public-url``
    applied (when given)."""
    return cfg.with_overrides(host=args.host, port=args.port, log_level=args.log_level,
                              public_url=getattr(args, "public_url", None))


def _add_server_options(p: argparse.ArgumentParser, *, public_url: bool = True) -> None:
    from reactor.config import LOG_LEVELS

    if public_url:  # not for a fleet: each of its daemons has its own
        p.add_argument("--public-url", metavar="URL",
                       help="where clients reach this daemon directly, in place of "
                       "server.public_url (e.g. one pod's name behind a balancer)")

    p.add_argument("--host", metavar="HOST",
                   help="address to bind, in place of server.host (anything but loopback "
                   "needs server.token)")
    p.add_argument("--port", type=int, metavar="PORT",
                   help="TCP port to bind, in place of server.port (0 picks a free one)")
    p.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower, metavar="LEVEL",
                   help=f"every process's log level, in place of log.level: "
                   f"{', '.join(LOG_LEVELS)} (debug also logs aiortc's and aioice's steps)")


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="the daemon's run directory (default: $REACTOR_RUN_DIR, "
        "$XDG_RUNTIME_DIR/reactor, or /tmp/reactor-$UID)",
    )


def _add_fleet_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", metavar="DIR",
                   help="the fleet's directory (default: the daemon's run directory "
                   "with -fleet after it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactor",
        description="Run a real-time video model as a live WebRTC stream.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    daemon = sub.add_parser("daemon", help="start, stop and inspect the daemon")
    dsub = daemon.add_subparsers(dest="daemon_cmd", metavar="ACTION", required=True)
    p = dsub.add_parser("start", help="start the daemon (detached unless --foreground)")
    p.add_argument("-c", "--config", help=CONFIG_HELP)
    p.add_argument("--foreground", action="store_true", help="log to the terminal; Ctrl+C stops")
    _add_server_options(p)
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_start)
    p = dsub.add_parser("stop", help="stop the daemon gracefully")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (default 15)")
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_stop)
    p = dsub.add_parser("drain", help="take no new session; stop once the running one ends "
                        "(or --timeout passes); /readyz answers 503 draining meanwhile")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="end the running session after S seconds at most (default: "
                   "session.drain_timeout_s; unset: wait for it to end however long it runs)")
    p.add_argument("--no-wait", action="store_true",
                   help="return once the drain has begun, rather than when the daemon stopped")
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_drain)
    p = dsub.add_parser("status", help="the daemon's state, workers, pipeline and session")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_status)
    p = dsub.add_parser("logs", help="print a process's log (all when none is named)")
    p.add_argument("process", nargs="?", help="supervisor, ingress, inference or egress")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_logs)
    p = dsub.add_parser("restart", help="restart one worker")
    p.add_argument("process", choices=["ingress", "inference", "egress"])
    _add_run_dir(p)
    p.set_defaults(func=cmd_daemon_restart)

    p = sub.add_parser("run", help="run in the foreground; with --input or --duration, "
                       "process a file or render one")
    p.add_argument("-c", "--config", help=CONFIG_HELP)
    p.add_argument("--input", metavar="FILE", help="a video file to feed the model (its sound "
                   "too, with audio.input)")
    p.add_argument("--output", metavar="FILE", help="write the model's output here (MP4; "
                   "with its sound, with audio.output)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds of video (S * fps frames); without --input, "
                   "render a generative model for S seconds of its own clock")
    p.add_argument("--commands", metavar="FILE.jsonl", help='timed commands: {"at_frame": N, '
                   '"command": NAME, "args": {...}} per line')
    p.add_argument("--lossless", action="store_true",
                   help="never drop an input frame (the model sets the pace)")
    _add_server_options(p)
    _add_run_dir(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("send", help="send a command to the running model")
    p.add_argument("command", help="the command's name (see `reactor schema`)")
    p.add_argument("args", nargs="*", metavar="key=value", help="arguments; values parse as JSON")
    _add_run_dir(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("schema", help="print the model's commands as JSON Schema")
    p.add_argument("-c", "--config", help=CONFIG_HELP)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("monitor", help="live dashboard of the running daemon")
    p.add_argument("--once", action="store_true", help="print one snapshot as text and exit")
    p.add_argument("--json", action="store_true", help="print one snapshot as JSON and exit")
    p.add_argument("--fleet", action="store_true",
                   help="every daemon of the fleet (`reactor fleet start`) in one table; "
                   "--run-dir is then the fleet's directory")
    _add_run_dir(p)
    p.set_defaults(func=cmd_monitor)

    fleet = sub.add_parser("fleet", help="one daemon per GPU behind HAProxy, on this machine")
    fsub = fleet.add_subparsers(dest="fleet_cmd", metavar="ACTION", required=True)
    p = fsub.add_parser("start", help="start one daemon per GPU (or --count N) and HAProxy "
                        "in front of them on one port")
    p.add_argument("-c", "--config", help=CONFIG_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--gpus", metavar="all|0,2,3",
                       help="one daemon per GPU: every GPU nvidia-smi lists, or these")
    which.add_argument("--count", type=int, metavar="N",
                       help="N daemons on the config's device (a machine without GPUs)")
    p.add_argument("--public-host", metavar="NAME",
                   help="the name clients reach this machine by, in each daemon's "
                   "server.public_url (default: server.host, or this machine's name when "
                   "it binds every address)")
    _add_server_options(p, public_url=False)
    _add_fleet_dir(p)
    p.set_defaults(func=cmd_fleet_start)
    p = fsub.add_parser("status", help="every daemon's state, session, fps and readiness")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_fleet_dir(p)
    p.set_defaults(func=cmd_fleet_status)
    p = fsub.add_parser("stop", help="stop the balancer and every daemon")
    p.add_argument("--timeout", type=float, default=15.0,
                   help="seconds each daemon may take (default 15)")
    _add_fleet_dir(p)
    p.set_defaults(func=cmd_fleet_stop)

    p = sub.add_parser("init", help="scaffold a new model: NAME/model.py, reactor.yaml, README")
    p.add_argument("name", nargs="?", help="the folder and model name")
    p.add_argument("--list", action="store_true",
                   help="list the packaged example configs (-c NAME takes them by name)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("token", help="mint a short-lived signed token (server.token_secret) "
                       "that every daemon sharing the secret accepts")
    p.add_argument("-c", "--config", help="the config whose server.token_secret (or "
                   f"token_secret_file) signs it; default: ${TOKEN_SECRET_ENV}")
    p.add_argument("--ttl", default="10m",
                   help="how long it is valid: 90s, 10m, 2h, 1d (default 10m, at most 7d)")
    p.add_argument("--scope", default="watch",
                   help="what it opens, comma-separated: watch (WHEP, events), send (WHIP), "
                   "command (model commands); default watch")
    p.set_defaults(func=cmd_token)

    config = sub.add_parser("config", help="work with config files")
    csub = config.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    p = csub.add_parser("check",
                        help="validate a config and import its model (--load: and load it)")
    p.add_argument("config", help=CONFIG_HELP.split("; default")[0])
    p.add_argument("--load", action="store_true",
                   help="also build the model and run its load() (weights and all), as the "
                   "daemon does at start")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="with --load: give load() S seconds (default: model.load_timeout_s)")
    p.set_defaults(func=cmd_config_check)
    return parser


def _version() -> str:
    from reactor import __distribution__, __version__

    return f"{__distribution__} {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except ReactorError as exc:
        print(f"reactor: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reactor schema | head`: the reader left; that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
