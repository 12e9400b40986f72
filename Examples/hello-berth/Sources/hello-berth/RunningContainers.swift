// The code of the article "Running containers" (RunningContainers.md) in
// Sources/Containers/Containers.docc, block by block in the article's order, so that
// `make check-consumer` compiles it as a dependent's code; scripts/check-doc-code checks that
// every block is here verbatim. Compiled, not run.
import Containers

func runningContainers() async throws {
    let runtime = try ContainerRuntime()            // BERTH_ROOT, else /var/lib/berth

    var config = ContainerConfiguration(image: "busybox", command: ["sh", "-c", "echo hi; exit 3"])
    config.name = "greeter"
    let container = try await runtime.run(config)
    let status = try await container.wait()             // .exited(3): a result, not an error
    for await entry in container.logs() { print(entry.stream, entry.log) }
    try await container.remove()

    let server = try await runtime.run(ContainerConfiguration(image: "busybox", command: ["sleep", "600"]))
    let result = try await server.exec(["ls", "/"])        // joins its namespaces and cgroup
    let stats = try server.stats()                         // memory, cpu, pids, block and network I/O
    try await server.pause()                               // cgroup freezer
    try await server.resume()
    try server.update(resources: CgroupResources(memoryLimit: 256 << 20))
    try await server.stop()                                // stop signal, then SIGKILL after 10 s

    var shellConfig = ContainerConfiguration(image: "busybox", command: ["sh", "-c", "read x; echo got $x"])
    shellConfig.interactive = true
    let shell = try await runtime.run(shellConfig)
    let attachment = try shell.attach()
    try await attachment.input?.write("hi\n")
    for await entry in attachment.output { print(entry.log, terminator: "") }   // got hi

    var jobSpec = ContainerConfiguration(image: "busybox", command: ["sh", "-c", "echo out; echo err >&2"])
    jobSpec.output = .stream
    jobSpec.timeout = .seconds(30)
    let job1 = try await runtime.run(jobSpec)
    for await chunk in try job1.output() {
        print(chunk.stream, String(decoding: chunk.bytes, as: UTF8.self), terminator: "")
    }
    if try await job1.wait() == .timedOut { print("too slow") }
    let listing = try await server.exec(["ls", "-R", "/"], outputLimit: 64 << 10, timeout: .seconds(5))
    print(listing.truncated)                                  // true: more than 64 KiB

    try server.copyIn(fromHostPath: "site/", to: "/srv")          // /srv/site/…
    try server.copyOut("/var/log/app.log", toHostPath: "logs/")    // logs/app.log

    let cache = try runtime.createVolume(name: "cache", labels: ["app": "web"])
    var jobConfig = ContainerConfiguration(image: "busybox", command: ["sh", "-c", "date >> /cache/runs"])
    jobConfig.mounts = [.volume(name: cache.name, target: "/cache", readOnly: false)]
    let job = try await runtime.run(jobConfig)
    _ = try await job.wait()
    print(try runtime.volumes().map(\.name))              // ["cache"]

    try await job.remove()                                 // the volume stays
    try runtime.removeVolume("cache")                      // refused while a container mounts it
    let removed = try runtime.pruneVolumes()               // every volume no container mounts

    for await event in runtime.events() where event.action == .die {
        print(event.name, event.attributes["exitCode"] ?? "")
    }

    // Process A
    var workerConfig = ContainerConfiguration(image: "busybox", command: ["sleep", "600"])
    workerConfig.name = "worker"
    workerConfig.lifetime = .detached
    _ = try await runtime.run(workerConfig)
    // … A exits; the container keeps running.

    // Process B, later
    let worker = try ContainerRuntime().container("worker")
    print(try await worker.exec(["hostname"]).standardOutput)
    try await worker.stop()
    try await worker.remove()

    var sandbox = ContainerConfiguration.untrusted(image: "busybox", command: ["sh", "-c", "ulimit -n"])
    sandbox.resourceLimits = [ResourceLimit(.openFiles, soft: 256, hard: 256)]
    sandbox.sysctls = ["net.ipv4.ip_unprivileged_port_start": "0"]      // namespaced ones only
    sandbox.capabilitiesAdded = [.netBindService]                         // typed: no unknown names
    sandbox.oomScoreAdjustment = 500
    sandbox.userNamespace = UserNamespaceRemapping(hostID: 200_000)     // root is host uid 200000
    sandbox.processSpecHook = { spec in spec.umask = 0o077 }             // last resort
    let snippet = try await runtime.run(sandbox)
    let sandboxed: ExitStatus = try await snippet.wait()
    print(sandboxed)
}
