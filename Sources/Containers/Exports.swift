// The types of other modules that the public API of Containers names, re-exported one by one,
// so that `import Containers` alone is enough to call it (the README's and the articles' code,
// compiled by Examples/hello-berth, imports nothing else). Each is the lower target's own type,
// documented there; scoped imports bring these names and no others (not `Digest`, `Platform`
// or `Mount`, which would collide with names of a program's other dependencies), and count as
// imports of their modules for member lookup (`MemberImportVisibility`). A program that wants
// a whole lower target imports it (it is a product of its own).
//
// When a public declaration of Containers starts naming another type of a lower target, add
// it here.

// Processes and their resources: how a container ended, signals, limits, usage, exec.
@_exported public import enum ContainerKernel.ExitStatus
@_exported public import struct ContainerKernel.Signal
@_exported public import struct ContainerKernel.CgroupResources
@_exported public import struct ContainerKernel.DeviceRule
@_exported public import struct ContainerKernel.BlockIOThrottle
@_exported public import struct ContainerKernel.BlockDevice
@_exported public import struct ContainerKernel.CgroupStats
@_exported public import struct ContainerKernel.KernelError
@_exported public import class ContainerKernel.ProcessHandle
@_exported public import struct ContainerKernel.ProcessIO
@_exported public import class ContainerKernel.ProcessInput

// The sandbox controls of a configuration: capabilities, resource limits, and the process
// spec that ``ContainerConfiguration/processSpecHook`` edits (the types of its fields come
// with `import ContainerKernel`; member syntax such as `.tmpfs("/run")` works without it).
@_exported public import struct ContainerKernel.Capability
@_exported public import struct ContainerKernel.ResourceLimit
@_exported public import struct ContainerKernel.ProcessSpec

// Images: the store a runtime holds, what it returns and takes, its errors.
@_exported public import class Images.ImageStore
@_exported public import struct Images.Image
@_exported public import struct Images.ImageReference
@_exported public import struct Images.ImageError
@_exported public import class Images.RegistryClient

// Layers: the layer store a runtime holds, and a container's file changes.
@_exported public import class Layers.LayerStore
@_exported public import struct Layers.Change
@_exported public import struct Layers.LayerError

// Networking: published ports and their addresses, the network manager a runtime holds.
@_exported public import struct Networking.PortMapping
@_exported public import class Networking.PortForwarder
@_exported public import struct Networking.IPv4Address
@_exported public import class Networking.NetworkManager
@_exported public import struct Networking.NetworkError

// Other packages' types in the API: descriptors for copy and export, the runtime's logger.
@_exported public import struct SystemPackage.FileDescriptor
@_exported public import struct Logging.Logger
