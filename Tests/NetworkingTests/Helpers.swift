import ContainerKernel
import Foundation
import Glibc
import Networking
import TestSupport

/// A Berth root of its own for one test, with a unique suffix for network names, torn down
/// (sandboxes, networks, directory) when the body ends.
func withNetworks<T>(_ body: (NetworkManager, String) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory(prefix: "net")
    let manager = try NetworkManager(root: directory.path)
    let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    do {
        let result = try await body(manager, suffix)
        try tearDown(manager)
        try directory.remove()
        return result
    } catch {
        try? tearDown(manager)
        try? directory.remove()
        throw error
    }
}

private func tearDown(_ manager: NetworkManager) throws {
    try manager.cleanupStale { _ in false }
    for network in try manager.list() { try manager.remove(network.id) }
}

/// A busybox spec running in a sandbox.
func sandboxedSpec(_ arguments: [String], in sandbox: Sandbox) throws -> ProcessSpec {
    var spec = ProcessSpec(rootfs: try TestRootfs.busybox(), arguments: arguments)
    sandbox.configure(&spec)
    return spec
}

/// Runs a busybox command in a sandbox to its end: status and output.
func run(_ arguments: [String], in sandbox: Sandbox) async throws -> (status: ExitStatus, output: String) {
    let process = try await ProcessHandle.spawn(try sandboxedSpec(arguments, in: sandbox))
    async let out = process.standardOutput?.collect(limit: 1 << 20).text ?? ""
    async let err = process.standardError?.collect(limit: 1 << 20).text ?? ""
    let status = try await process.wait()
    return (status, await out + (await err))
}

/// A directory with `index.html` holding `text`, for busybox httpd to serve.
func webRoot(_ text: String) throws -> TemporaryDirectory {
    let directory = try TemporaryDirectory(prefix: "www")
    try Data(text.utf8).write(to: URL(fileURLWithPath: directory.path + "/index.html"))
    return directory
}

/// Starts busybox httpd in the foreground on `port`, serving `root`.
func startHTTPServer(in sandbox: Sandbox, root: String, port: Int = 80, delay: Int = 0) async throws -> ProcessHandle {
    let command = delay > 0 ? "sleep \(delay); exec httpd -f -p \(port) -h /mnt" : "exec httpd -f -p \(port) -h /mnt"
    var spec = try sandboxedSpec(["/bin/sh", "-c", command], in: sandbox)
    // /mnt is in the shared test rootfs: a missing target would be created in it.
    spec.mounts.append(.bind(root, to: "/mnt", readOnly: true))
    return try await ProcessHandle.spawn(spec)
}

/// Stops a long-running test process and waits for it.
func stop(_ process: ProcessHandle) async {
    try? process.signal(.kill)
    _ = try? await process.wait()
}

/// Interfaces that `ip -o link` lists in the host's namespace: the oracle for leak checks.
func hostInterfaces() throws -> Set<String> {
    let output = try command(["ip", "-o", "link", "show"])
    return Set(
        output.split(separator: "\n").compactMap { line in
            line.split(separator: ":", maxSplits: 2).dropFirst().first.map {
                String($0.trimmingCharacters(in: .whitespaces).split(separator: "@").first ?? "")
            }
        })
}

/// Runs a host program (only `ip`, as an oracle) and returns its output; non-zero exit throws.
func command(_ arguments: [String]) throws -> String {
    let (status, output) = try runProgram(arguments)
    guard status == 0 else {
        throw TestSupportError("\(arguments.joined(separator: " ")) exited \(status): \(output)")
    }
    return output
}
