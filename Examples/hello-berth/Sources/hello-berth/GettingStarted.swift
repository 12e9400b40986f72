// The code of the article "Getting started" (GettingStarted.md) in
// Sources/Containers/Containers.docc, block by block in the article's order, so that
// `make check-consumer` compiles it as a dependent's code; scripts/check-doc-code checks that
// every block is here verbatim. Compiled, not run.
import Containers

func gettingStarted() async throws {
    let runtime = try ContainerRuntime()            // BERTH_ROOT, else /var/lib/berth
    try await runtime.images.makeBusyboxImage()     // docker.io/library/busybox:latest, offline

    try await runtime.images.load(from: "app.tar")                  // `docker save` or OCI archive
    try await runtime.images.importLayout(at: "/srv/oci-layout")    // an OCI image layout directory
    try await runtime.images.importFilesystem(                      // a root filesystem directory
        "/srv/rootfs", as: ImageReference(parsing: "local/rootfs:1"))

    let container = try await runtime.run(ContainerConfiguration(image: "busybox", command: ["echo", "hello"]))
    let status = try await container.wait()             // .exited(0)

    var config = ContainerConfiguration(image: "busybox", command: ["httpd", "-f", "-p", "8080"])
    config.resources = CgroupResources(memoryLimit: 64 << 20, pidsLimit: 100)
    config.network = .bridge(["bridge"])
    config.ports = [PortMapping(hostPort: 8080, containerPort: 8080)]
    let server = try await runtime.run(config)

    for await entry in container.logs() {
        print(entry.stream, entry.log, terminator: "")
    }
    switch status {
    case .exited(let code): print("exit code", code)
    case .signaled(let signal, _): print("killed by", signal)
    case .oomKilled: print("out of memory")
    case .timedOut: print("killed at its deadline")
    }

    let result = try await server.exec(["cat", "/etc/hostname"])
    print(result.standardOutput)

    try await container.remove()
    _ = try await server.stop(timeout: .seconds(2))
    try await server.remove()

    try await runtime.withRunning(ContainerConfiguration(image: "busybox", command: ["sleep", "60"])) { container in
        try container.kill(.terminate)
        print(try await container.wait())               // killed by SIGTERM
    }

    var worker = ContainerConfiguration(image: "busybox", command: ["sleep", "600"])
    worker.name = "worker"
    worker.lifetime = .detached
    _ = try await runtime.run(worker)
    // Later, in any process on the same root:
    try await runtime.container("worker").remove(force: true)
}
