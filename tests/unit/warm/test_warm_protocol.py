

def test_the_client_and_the_runtime_name_the_same_socket():
    from stackctl.paths import NodePaths
    from stackctl.warm import client, files

    paths = NodePaths("/s", "/r/x", "p")
    assert client.SOCKET_NAME == files.SOCKET_NAME
    assert client.run_socket(paths.run) == files.socket_path(paths)
