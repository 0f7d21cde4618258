"""The vars file a job's ansible-playbook gets (`-e @variables.yml`): values are data, whatever
they hold, with their types, and only the platform's own credential lookups are templates. Run
through the real ansible-playbook on this machine, as a job stored before the rules (or a value
the checks missed) would be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from webui.jobs.runner import extra_vars_file

PLAYBOOK = """
- name: Show the variables as Ansible sees them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Dump
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'values': [x, nested, confirm, number, text, empty],
                      'types': [confirm, number, text] | map('type_debug') | list,
                      'admin': mongodb_security_admin_user} | to_json }}"
"""


def test_values_are_never_rendered_and_keep_their_types(tmp_path: Path) -> None:
    job = {
        "extra_vars": {
            "x": "{{ lookup('ansible.builtin.pipe', 'id') }}",
            "nested": {"k": ["{% for i in range(3) %}{{ i }}{% endfor %}", "{# c #}"]},
            "confirm": "yes",
            "number": 3,
            "text": "123",
            "empty": "",
        }
    }
    (tmp_path / "variables.yml").write_text(extra_vars_file(job, {"mongodb"}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(tmp_path / "play.yml"),
         "-e", f"@{tmp_path / 'variables.yml'}", "-e", f"out={out}"],
        capture_output=True, text=True, check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
             "WAP_MONGODB_USERNAME": "dba"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert seen["values"] == [
        "{{ lookup('ansible.builtin.pipe', 'id') }}",
        {"k": ["{% for i in range(3) %}{{ i }}{% endfor %}", "{# c #}"]},
        "yes", 3, "123", "",
    ]  # fmt: skip
    assert seen["types"] == ["str", "int", "str"]
    assert seen["admin"] == "dba"  # the platform's lookup of the credential is a template
