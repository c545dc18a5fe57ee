import os

import pytest

from stackctl.errors import StackctlError
from stackctl.runtime.images.build import dockerfile as D
from stackctl.runtime.images.build import metadata as M
from stackctl.runtime.images.build.words import ExpandError, expand, expand_fields, split_words

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "images")


def read(name):
    with open(os.path.join(FIX, name)) as f:
        return f.read()


def test_parse_fixture():
    df = D.parse(read("Dockerfile.parse"))
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    cmds = [i.cmd for i in df.instructions]
    assert cmds == ["ARG", "FROM", "RUN", "COPY", "ENV", "ENV", "CMD", "ENTRYPOINT", "HEALTHCHECK"]
    frm = df.instructions[1]
    assert D.from_parts(frm) == ("busybox:${VERSION}", "build") and frm.line == 6
    run = df.instructions[2]
    assert run.rest == "echo a     && echo b     && echo c" and run.line == 7
    copy = df.instructions[3]
    assert copy.flags == {"chown": ["1:2"], "chmod": ["644"]} and copy.exec_form == ["a b", "/dst/"]
    assert D.key_values(df.instructions[4]) == [("A", "1"), ("B", '"two words"'), ("C", "three")]
    assert D.key_values(df.instructions[5]) == [("LEGACY", "value with spaces")]
    assert df.instructions[6].exec_form == ["sh", "-c", "echo hi"]
    assert df.instructions[7].exec_form is None
    hc = df.instructions[8]
    assert hc.flag("interval") == "30s" and hc.rest == 'CMD ["true"]'


def test_backtick_escape():
    df = D.parse(read("Dockerfile.backtick"))
    assert df.escape == "`"
    assert df.instructions[1].rest.split() == ["a", "C:\\dest\\"]


def test_directive_only_at_top():
    df = D.parse("FROM scratch\n# escape=`\nCOPY a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].rest == "a  b"


@pytest.mark.parametrize("text,msg", [
    ("FROM scratch\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("FROM scratch\nCOPY a\n", "requires at least two arguments"),
    ("FROM a b\n", "FROM requires either one or three"),
    ("FROM scratch\nSHELL /bin/sh\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM scratch\nCOPY --bogus=1 a b\n", "does not support the flag --bogus"),
    ("", "the Dockerfile is empty"),
    ("FROM scratch\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no other arguments"),
])
def test_errors(text, msg):
    with pytest.raises(D.DockerfileError, match=msg):
        D.parse(text)


def test_invalid_json_is_shell_form():
    ins = D.parse("FROM s\nRUN [not json\n").instructions[1]
    assert ins.exec_form is None and ins.rest == "[not json"


ENV = {"A": "1", "EMPTY": "", "P": "/usr/bin"}


@pytest.mark.parametrize("word,out", [
    ("$A", "1"), ("${A}", "1"), ("x${A}y", "x1y"), ("$UNSET", ""), ("${UNSET:-d}", "d"),
    ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${A:+set}", "set"), ("${UNSET:+set}", ""),
    ("${EMPTY+set}", "set"), ("'$A'", "$A"), ('"$A b"', "1 b"), ("\\$A", "$A"), ('"\\$A"', "$A"),
    ('"a\\b"', "a\\b"), ("${UNSET:-${A}}", "1"), ("$", "$"), ("a$", "a$"), ("${P}:/x", "/usr/bin:/x"),
])
def test_expand(word, out):
    assert expand(word, ENV) == out


def test_expand_errors_and_fields():
    with pytest.raises(ExpandError, match="UNSET: needed"):
        expand("${UNSET:?needed}", ENV)
    with pytest.raises(ExpandError):
        expand("${A", ENV)
    assert expand_fields('80 "8080/udp" $A', ENV) == ["80", "8080/udp", "1"]
    assert split_words('a="x y" b=\'z\' c\\ d') == ['a="x y"', "b='z'", "c\\ d"]


def test_metadata_apply():
    df = D.parse("FROM s\nENV A=1 B=$A\nWORKDIR /a\nWORKDIR b/../c\nEXPOSE 80 53/udp 7000-7001\nVOLUME /v [\"x\"]\n"
                 "LABEL \"k v\"=\"w x\"\nUSER ${A}:2\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n"
                 "ENTRYPOINT [\"/e\"]\nHEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD curl x\n")
    cfg: dict = {}
    for ins in df.instructions[1:]:
        M.apply(cfg, ins, M.env_map(cfg))
    assert cfg["Env"] == ["A=1", "B=1"]
    assert cfg["WorkingDir"] == "/a/c"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp", "7000/tcp", "7001/tcp"}
    assert cfg["Labels"] == {"k v": "w x"} and cfg["User"] == "1:2" and cfg["StopSignal"] == "SIGINT"
    assert cfg["Cmd"] == ["/bin/bash", "-c", "echo hi"] and cfg["Entrypoint"] == ["/e"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl x"], "Interval": 90 * 10**9,
                                  "Timeout": 500 * 10**6, "Retries": 2}
    assert "/v" in cfg["Volumes"]


def test_healthcheck_none_and_changes():
    cfg = M.apply_changes({}, ['CMD ["sh"]', "ENV X=1", "EXPOSE 80"])
    assert cfg == {"Cmd": ["sh"], "Env": ["X=1"], "ExposedPorts": {"80/tcp": {}}}
    with pytest.raises(StackctlError, match="RUN is not allowed"):
        M.apply_changes({}, ["RUN true"])
    cfg = {}
    M.apply(cfg, D.parse("FROM s\nHEALTHCHECK NONE\n").instructions[1], {})
    assert cfg["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(StackctlError, match="invalid port"):
        M.apply({}, D.parse("FROM s\nEXPOSE abc\n").instructions[1], {})
