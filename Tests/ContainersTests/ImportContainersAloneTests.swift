import Containers
import Testing

// This file imports Containers and nothing else (imports are per file): it compiles only while
// `import Containers` exposes every type its public API names (Exports.swift). Add a type here
// when the API starts naming it.

@Test func everyTypeThePublicAPINamesIsVisibleWithImportContainersAlone() throws {
    var configuration: ContainerConfiguration = .untrusted(image: "busybox")
    let resources: CgroupResources = CgroupResources(memoryLimit: 64 << 20, pidsLimit: 10)
    let device: DeviceRule = DeviceRule.dockerDefaults[0]
    let throttle: BlockIOThrottle? = nil
    let port: PortMapping = PortMapping(hostPort: 8080, containerPort: 80)
    let address: IPv4Address? = nil
    let forwarders: [PortForwarder] = []  // what Container.publish(_:) returns
    let status: ExitStatus = .signaled(.terminate, coreDumped: false)
    let signal: Signal = .kill
    let capability: Capability = .netBindService
    let limit: ResourceLimit = ResourceLimit(.openFiles, soft: 64, hard: 64)
    let range: UserNamespaceRemapping = UserNamespaceRemapping(hostID: 300_000)
    let hook: @Sendable (inout ProcessSpec) async throws -> Void = { spec in spec.noNewPrivileges = true }
    let kernelError: KernelError? = nil
    let reference: ImageReference = try ImageReference(parsing: "busybox:1")
    configuration.resources = resources
    configuration.resources.devices.append(device)
    configuration.ports = [port]
    configuration.capabilitiesAdded = [capability]
    configuration.resourceLimits = [limit]
    configuration.userNamespace = range
    configuration.processSpecHook = hook
    configuration.stopSignal = signal.description
    #expect(throttle == nil && address == nil && kernelError == nil && forwarders.isEmpty)
    #expect(status != .exited(0) && reference.description.hasSuffix("busybox:1"))
}
