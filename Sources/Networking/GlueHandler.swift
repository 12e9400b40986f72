import NIOCore

/// Joins two channels on one event loop: what one reads, the other writes, with backpressure
/// (a side reads only while its partner can write) and half-close passed through.
///
/// The pattern is SwiftNIO's connect-proxy example (swift-nio-examples, `GlueHandler`); unlike
/// it, a side does not read at all until its partner is in a pipeline, so a server that speaks
/// first (an SSH or SMTP banner) loses nothing while the client side is being set up.
final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private var inputClosed = false
    private var outputClosed = false

    private init() {}

    /// Two handlers that forward to each other; add one to each channel, on the same event loop.
    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(), second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    private var partnerCanWrite: Bool { partner?.context?.channel.isWritable ?? false }

    private func partnerWrite(_ buffer: ByteBuffer) {
        context?.write(NIOAny(buffer), promise: nil)
    }

    private func partnerFlush() { context?.flush() }

    /// The partner's peer finished sending: finish ours too (TCP half-close), and close the
    /// channel once both directions are done.
    private func partnerInputClosed() {
        outputClosed = true
        if inputClosed {
            context?.close(promise: nil)
        } else {
            context?.close(mode: .output, promise: nil)
        }
    }

    private func partnerClosed() { context?.close(promise: nil) }

    private func partnerBecameWritable() {
        guard pendingRead else { return }
        pendingRead = false
        context?.read()
    }
}

extension GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        partner?.partnerBecameWritable()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClosed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .some(ChannelEvent.inputClosed) = event as? ChannelEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        inputClosed = true
        partner?.partnerInputClosed()
        if outputClosed { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if partnerCanWrite {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
