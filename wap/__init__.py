"""WAP outside the web platform: the `wap` command line (cli), deployment plans (plan) and the
local test lab (lab)."""
