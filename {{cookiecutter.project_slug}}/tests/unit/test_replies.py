"""What a handler hands back for a download."""

from {{ cookiecutter.package_name }} import replies


def test_a_download_is_an_empty_body_for_nginx_or_a_file_for_direct_delivery(tmp_path):
    accel = replies.download_reply(
        filename="a.txt", content_type="text/plain", accel_path="/_internal/exports/x", file=None
    )
    assert accel.body is None and accel.file is None
    assert accel.headers["X-Accel-Redirect"] == "/_internal/exports/x"
    direct = replies.download_reply(
        filename="a.txt", content_type="text/plain", accel_path="/x", file=tmp_path
    )
    assert direct.file == tmp_path and "X-Accel-Redirect" not in direct.headers
