"""PyYAML imported with lazy module-level patterns (stackctl/spec/yamlimport.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from stackctl.spec.yamlimport import LazyPattern, compiled


def test_lazy_pattern_answers_as_the_compiled_one():
    lazy = LazyPattern(r"^(?:[0-9]+)$", re.X)
    assert lazy._compiled is None
    assert lazy.match("123") and not lazy.match("12a")
    assert lazy.pattern == r"^(?:[0-9]+)$" and lazy.flags & re.X
    assert compiled(lazy) is lazy._compiled is re.compile(r"^(?:[0-9]+)$", re.X)
    plain = re.compile("x")
    assert compiled(plain) is plain


def test_first_import_defers_pyyaml_patterns_and_keeps_pyyaml_working():
    root = str(Path(__file__).resolve().parents[3])  # the checkout (not the cwd)
    code = (f"import sys; sys.path += {[root] + [p for p in sys.path if p]!r}\n"
            "import re\n"
            "real = re.compile\n"
            "from stackctl.spec.yamlimport import import_yaml\n"
            "yaml = import_yaml()\n"
            "assert re.compile is real\n"  # put back
            "assert type(yaml.reader.Reader.NON_PRINTABLE).__name__ == 'LazyPattern'\n"
            "assert type(re.compile('a')) is re.Pattern\n"
            # PyYAML's own resolvers and constructors still work (YAML 1.1, timestamps)
            "d = yaml.safe_load('a: yes\\nb: 2001-12-14\\nc: 0x1F\\nd: 1.5\\ne: ~\\n')\n"
            "assert d['a'] is True and str(d['b']) == '2001-12-14' and d['c'] == 31, d\n"
            "assert d['d'] == 1.5 and d['e'] is None, d\n"
            "yaml.reader.Reader('ok')\n"
            "try:\n    yaml.reader.Reader('bad \\x07')\nexcept yaml.reader.ReaderError:\n    pass\n"
            "else:\n    raise AssertionError('NON_PRINTABLE did not match')\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
