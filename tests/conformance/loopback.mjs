// Preloaded into the suite's origin server: a listen() given only a port binds 127.0.0.1,
// never every interface.
import net from 'net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (args.length >= 1 && (typeof args[0] === 'number' || typeof args[0] === 'string') && !(typeof args[1] === 'string')) {
    return listen.call(this, Number(args[0]), '127.0.0.1', ...args.slice(1))
  }
  return listen.apply(this, args)
}
