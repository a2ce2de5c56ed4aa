import net from 'node:net';

/**
 * Asks the kernel for a free loopback port by binding port 0 and releasing it.
 * There is a small window in which another process could take the port before
 * the caller binds it; callers that spawn external servers retry on EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('could not read the address of a port-0 listener'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** Resolves with the bound port once an in-process server listens on 127.0.0.1:0. */
export async function listenOnLoopback(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error('server has no TCP address'));
        return;
      }
      resolve(address.port);
    });
  });
}
