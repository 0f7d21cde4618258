# The two commands of the README's quick start. Both install whatever is missing first.
.PHONY: up test install

install:
	scripts/install

up: install
	.venv/bin/wap up

test: install
	scripts/test
