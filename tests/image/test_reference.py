"""Image references normalised as docker does, bad ones refused naming the part that is wrong."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nsprim.errors import ImageError, ImageReferenceError
from nsprim.image.reference import ImageReference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("someone/tool:v1", "docker.io/someone/tool:v1"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("127.0.0.1:5000/ns/name:tag", "127.0.0.1:5000/ns/name:tag"),
        (f"quay.io/ns/name@{D}", f"quay.io/ns/name@{D}"),
        (f"name:tag@{D}", f"docker.io/library/name:tag@{D}"),
        ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ("ab-c_d__e/f.g", "docker.io/ab-c_d__e/f.g:latest"),
    ],
)
def test_references_are_normalised_as_docker_does(text: str, canonical: str) -> None:
    ref = ImageReference.parse(text)
    assert str(ref) == canonical
    assert ImageReference.parse(canonical) == ref


def test_the_parts() -> None:
    ref = ImageReference.parse(f"localhost:5000/ns/name:tag@{D}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("localhost:5000", "ns/name", "tag", D)
    assert ref.reference == D and ref.name == "localhost:5000/ns/name"
    assert ImageReference.parse("x").reference == "latest"
    assert str(ref.with_tag("v2")) == "localhost:5000/ns/name:v2"


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("", "repository"),
        ("Busybox", "repository"),
        ("a//b", "repository"),
        ("a/-b", "repository"),
        ("x:.bad", "tag"),
        ("x:" + "t" * 129, "tag"),
        ("x@sha256:abc", "digest"),
        ("x@md5:" + "0" * 32, "digest"),
        ("x@sha256:" + "AB" * 32, "digest"),
        ("x@" + D + "@" + D, "digest"),
        ("bad_host.io:x/y", "registry"),
        ("-h.io/y", "registry"),
    ],
)
def test_a_bad_reference_names_the_part(text: str, what: str) -> None:
    with pytest.raises(ImageReferenceError) as info:
        ImageReference.parse(text)
    assert info.value.what == what, info.value
    assert isinstance(info.value, ImageError) and isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))
    assert (str(again), again.what) == (str(info.value), what)


_component = st.from_regex(r"[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,5}){0,2}", fullmatch=True)
_first = st.from_regex(r"[a-z0-9]{1,5}(?:[_-][a-z0-9]{1,5}){0,2}", fullmatch=True)  # a "." would make it a host
_host = st.sampled_from(["localhost", "localhost:5000", "127.0.0.1:5000", "quay.io", "reg.example.com:443"])
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256:" + h)


@given(
    host=st.none() | _host,
    parts=st.tuples(_first, st.lists(_component, max_size=2)).map(lambda t: [t[0], *t[1]]),
    tag=st.none() | _tag,
    digest=st.none() | _digest,
)
def test_a_reference_round_trips(host: str | None, parts: list[str], tag: str | None, digest: str | None) -> None:
    repository = "/".join(parts)
    text = (f"{host}/" if host else "") + repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = ImageReference.parse(text)
    assert ref.registry == (host or "docker.io")
    if host or len(parts) > 1:
        assert ref.repository == repository
    else:
        assert ref.repository == f"library/{repository}"
    assert ref.digest == digest
    assert ref.tag == (tag if tag or digest else "latest")
    assert ImageReference.parse(str(ref)) == ref


@given(st.text(max_size=40))
def test_any_text_is_a_reference_or_a_reference_error(text: str) -> None:
    try:
        ref = ImageReference.parse(text)
    except ImageReferenceError:
        return
    assert ImageReference.parse(str(ref)) == ref
