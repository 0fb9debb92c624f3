# Shortcuts for developers; the README's commands are `bash scripts/do demo|test`
# (a fresh Debian 12 has no make until the set-up installs it).
.PHONY: setup demo test lint bench
setup: ; bash scripts/setup.sh
demo: ; bash scripts/do demo
test: ; bash scripts/do test
lint: ; .venv/bin/ruff check src tests bench
