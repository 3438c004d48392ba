// Drives the gateway with the official OpenAI JavaScript client (npm `openai`, found through
// NODE_PATH). Usage: node openai_client.cjs BASE_URL MODEL
// Prints one JSON line with what it saw; exits non-zero on any client error.
const OpenAI = require('openai');

async function main() {
  const [baseURL, model] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY || 'none', maxRetries: 0, timeout: 60000 });
  const out = {};
  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);
  const chat = await client.chat.completions.create({
    model, max_tokens: 8, messages: [{ role: 'user', content: 'Say hello.' }],
  });
  out.chat = {
    object: chat.object,
    finish_reason: chat.choices[0].finish_reason,
    content_length: (chat.choices[0].message.content || '').length,
    completion_tokens: chat.usage.completion_tokens,
  };
  const stream = await client.chat.completions.create({
    model, max_tokens: 8, stream: true, messages: [{ role: 'user', content: 'Count to three.' }],
  });
  let chunks = 0, text = '', finish = null;
  for await (const chunk of stream) {
    chunks++;
    const c = chunk.choices[0];
    if (c && c.delta && c.delta.content) text += c.delta.content;
    if (c && c.finish_reason) finish = c.finish_reason;
  }
  out.stream = { chunks, content_length: text.length, finish_reason: finish };
  const completion = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 4 });
  out.completion = { object: completion.object, completion_tokens: completion.usage.completion_tokens };
  try {
    await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
    out.unknown = 'no error';
  } catch (e) {
    out.unknown = { status: e.status, code: e.code, type: e.type };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error('client error:', e && e.stack ? e.stack : e);
  process.exit(1);
});
