"""Entry point of the frozen Cerber app (and usable from a source install).

    Cerber                  the desktop app (also: Cerber gui [IMAGES...], Cerber IMAGES...)
    Cerber --version        the version
    Cerber --selftest       analyze a synthetic image with known tracks with the bundled model
    Cerber analyze ...      the same command line as ``cerber analyze`` (also info, evaluate, ...)
"""

from __future__ import annotations

import sys

CLI_COMMANDS = {"analyze", "info", "selftest", "generate", "train", "evaluate"}


def main(argv: list[str] | None = None) -> int:
    # `generate` starts worker processes; in the frozen program they start this same executable,
    # and freeze_support() turns them into workers instead of new copies of the app.
    import multiprocessing

    multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from cerber_model import __version__

        print(f"Cerber {__version__}")
        return 0
    if argv[:1] == ["--selftest"]:
        return selftest(argv[1:])
    if argv[:1] and argv[0] in CLI_COMMANDS:
        from cerber_model.cli import main as cli_main

        return cli_main(argv)
    if argv[:1] == ["gui"]:
        argv = argv[1:]
    from cerber_gui.app import main as gui_main

    return gui_main(argv)


def selftest(argv: list[str]) -> int:
    """The model check of ``cerber selftest``, then the main window opened offscreen."""
    from cerber_model.cli import main as cli_main

    status = cli_main(["selftest", *argv])
    if status == 0:
        from cerber_gui.app import check_window

        try:
            print(check_window())
        except Exception as exc:  # a missing Qt plugin or library: say which
            print(f"selftest FAILED: the window could not be opened: {exc}")
            return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
